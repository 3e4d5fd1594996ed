"""Reference for tests/bicubic_resize_test.cpp: torch's antialiased bicubic resize of a raw RGB
uint8 image the way torch's uint8 path does it (horizontal pass, rounded and clamped to uint8,
then vertical pass, rounded and clamped), with each pass computed by torch's float antialiased
interpolate (torch 1.13 has no uint8 antialias kernel). The intermediate rounding matters: the
bicubic overshoot clamped after the first pass changes results by many levels near edges.

usage: torch_bicubic_resize.py IN_RAW H W OUT_RAW OUT_H OUT_W
Layouts as in pil_resize.py.
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F


def main():
    src, h, w, dst, oh, ow = sys.argv[1:7]
    h, w, oh, ow = int(h), int(w), int(oh), int(ow)
    img = np.fromfile(src, dtype=np.uint8).reshape(h, w, 3)
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()
    for size in ((h, ow), (oh, ow)):
        if tuple(x.shape[2:]) != size:  # torch skips an axis whose size does not change
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
            x = x.round().clamp(0, 255)
    y = x.to(torch.uint8)[0].permute(1, 2, 0).contiguous()
    y.numpy().tofile(dst)


if __name__ == "__main__":
    main()
