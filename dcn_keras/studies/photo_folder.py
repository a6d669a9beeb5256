"""A folder of large JPEG "photos" in two classes, for measuring `--dataset=folder` at scale.

Each image is noise with one small bright shape, a disc or a bar, at a
random place: a task a DCN is for (the object small against the image).
docs/performance.md measures `bin/dcn_train --dataset=folder`'s memory on
1,500 such 512 x 512 JPEGs:

    python -m dcn_keras.studies.photo_folder /tmp/photos --count=1500 --size=512
"""

import argparse
import os

import numpy as np

CLASSES = ("bar", "disc")


def make_photo_folder(root, count=1500, size=512, seed=0):
    """Writes `count` JPEGs, half per class, under `root/<class>/`; returns `root`."""
    from PIL import Image

    if count < 2 or size < 48:
        raise ValueError(f"count={count} and size={size} must be at least 2 and 48.")
    rng = np.random.default_rng(seed)
    rows, cols = np.ogrid[:40, :40]
    disc = (rows - 20) ** 2 + (cols - 20) ** 2 < 300
    for n in range(count):
        name = CLASSES[n % 2]
        os.makedirs(os.path.join(root, name), exist_ok=True)
        image = (rng.random((size, size, 3)) * 60).astype(np.uint8)
        y, x = rng.integers(0, size - 40, 2)
        if name == "disc":
            image[y:y + 40, x:x + 40][disc] = 250
        else:
            image[y + 15:y + 25, x:x + 40] = 250
        Image.fromarray(image).save(os.path.join(root, name, f"{n // 2:05d}.jpg"), quality=90)
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv)
    make_photo_folder(args.root, args.count, args.size)
    print(f"{args.count} {args.size}x{args.size} JPEGs in {args.root}")


if __name__ == "__main__":
    main()
