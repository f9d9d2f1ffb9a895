"""The report's planes are shown in the radiological convention whatever the file's orientation: axial with
anterior up and the patient's right on the viewer's left, coronal and sagittal with superior up."""

import numpy as np

from medseg.image import Image
from medseg.report.figures import overlay_figure, patient_axes


def _marked(direction: np.ndarray, marker: tuple[int, int, int]) -> tuple[Image, Image]:
    array = np.zeros((1, 6, 8, 10), np.float32)
    array[(0, *marker)] = 100.0
    labels = np.zeros((1, 6, 8, 10), np.uint8)
    labels[(0, *marker)] = 1
    image = Image(array, spacing=(2.0, 1.0, 1.0), direction=direction)
    return image, image.with_array(labels)


def _axial_drawn(image: Image, labels: Image) -> np.ndarray:
    import matplotlib.pyplot as plt

    fig = overlay_figure(image, labels, {1: "marker"})
    try:
        axial = fig.axes[0].images[0]
        return np.asarray(axial.get_array())
    finally:
        plt.close(fig)


def test_a_ras_nifti_is_turned_to_the_radiological_view():
    # ITK's frame is LPS; a NIfTI stored in RAS has its rows and columns running the other way
    ras = np.diag([1.0, -1.0, -1.0])
    assert patient_axes(ras) == ((0, 1, 2), (False, True, True))
    # array row 0 = most posterior, column 0 = the patient's far left
    image, labels = _marked(ras, (3, 0, 0))
    drawn = _axial_drawn(image, labels)
    row, col = np.unravel_index(np.argmax(drawn), drawn.shape)
    assert (row, col) == (7, 9)  # posterior → bottom row, patient's left → viewer's right
    # the same voxel in an LPS file sits anterior-right: top-left
    image, labels = _marked(np.eye(3), (3, 0, 0))
    drawn = _axial_drawn(image, labels)
    assert np.unravel_index(np.argmax(drawn), drawn.shape) == (0, 0)


def test_a_sagittally_stored_volume_is_permuted_to_axial_planes():
    # array axis 0 runs right → left (physical x), axis 1 anterior → posterior, axis 2 inferior → superior
    direction = np.zeros((3, 3))
    direction[2, 0] = 1.0   # array axis 0 along physical x (last row in medseg's (z, y, x) order)
    direction[1, 1] = 1.0   # array axis 1 along y
    direction[0, 2] = 1.0   # array axis 2 along z
    assert patient_axes(direction) == ((2, 1, 0), (False, False, False))
    assert patient_axes(np.ones((3, 3))) == ((0, 1, 2), (False, False, False))  # no clear axes: as stored
