"""The published SFT results (Song, Choi & Han, ICCV 2021): Kodak, uniform maps, real bpp with header.

Source: ../shared/docs/sft-codec-reference.md (the reference model after 2M iterations).
"""

PUBLISHED_SFT_KODAK = {
    "name": "sft-published",
    "description": "Song, Choi & Han (ICCV 2021), published table, Kodak, uniform q",
    "results": {
        "q": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        "bpp": [0.0912, 0.1187, 0.1559, 0.2058, 0.2712, 0.3558, 0.4567, 0.5802, 0.7121, 0.8620, 1.0179],
        "psnr-rgb": [27.11, 27.98, 28.90, 29.91, 30.97, 32.11, 33.28, 34.48, 35.56, 36.59, 37.47],
        "ms-ssim-rgb": [0.898, 0.916, 0.932, 0.946, 0.958, 0.968, 0.975, 0.981, 0.985, 0.988, 0.991],
    },
}
