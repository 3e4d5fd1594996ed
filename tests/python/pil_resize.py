"""Reference for tests/image_resize_test.cpp: resizes a raw RGB uint8 image with Pillow.

usage: pil_resize.py IN_RAW H W OUT_RAW OUT_H OUT_W
The input is H*W*3 bytes (row-major, interleaved RGB); the output is written the same way. The
resize is Image.resize((OUT_W, OUT_H), BILINEAR), which is what torchvision's Resize does on a
PIL image in the official SigLIP2 preprocessing.
"""
import sys

from PIL import Image


def main():
    src, h, w, dst, oh, ow = sys.argv[1:7]
    h, w, oh, ow = int(h), int(w), int(oh), int(ow)
    with open(src, "rb") as f:
        img = Image.frombytes("RGB", (w, h), f.read())
    out = img.resize((ow, oh), Image.BILINEAR)
    with open(dst, "wb") as f:
        f.write(out.tobytes())


if __name__ == "__main__":
    main()
