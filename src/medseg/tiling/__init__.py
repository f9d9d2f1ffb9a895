"""A network applied to a whole grid in tiles: Gaussian-weighted sliding window (:mod:`.sliding_window`),
mirroring (:mod:`.tta`), 2D networks on 3D data slice by slice (:mod:`.slices`).

The primitive below both training (validation) and inference (the predictor), so neither imports the
other. Import the submodules: this package imports nothing, so that reading a model folder's patch size
(:func:`medseg.tiling.slices.volume_patch_size`) does not load torch.
"""
