"""Contact sheet of synthetic faces at several texture strengths (the picture in
docs/synthetic-faces.md).

Usage: python -m misc.contact_sheet [--seed 0] [--identities 0 2 11 13] [--strengths 1 2 4]
           [--image-index 0] [--network-view 64] [--output docs/synthetic-faces-texture.jpg]

One row per ``texture_strength``; in each row the identities' image ``--image-index`` as
``SyntheticFaces`` writes it (178 x 218, the same pose, expression and lighting in every
row), then, with ``--network-view N`` (0: off), the same images as a network with
``imwidth`` N sees them: the CelebA crop (rows 30-207) resized bilinearly to N x N as the
loader does, enlarged back to 178 x 178 with nearest-neighbour so its pixels show, at the
crop's place in the tile. The strength is written in the row's first tile.
"""
import argparse
import logging
from pathlib import Path
from typing import List, Optional, Sequence

from PIL import Image, ImageDraw

from data_loader.synthetic import (IMAGE_SIZE, FaceRenderer, contact_sheet, identity_rng,
                                   image_rng, sample_identity, sample_variation)
from data_loader.synthetic.texture import check_texture_strength

_logger = logging.getLogger(__name__)
CROP_TOP = 30  # the CelebA face box: rows 30..207 of the 178 x 218 image


def network_view(image: Image.Image, imwidth: int) -> Image.Image:
    """``image`` (178 x 218) as the loader gives it at ``imwidth``, enlarged back with
    nearest-neighbour into a black tile of the same size, at the crop's rows."""
    width = IMAGE_SIZE[0]
    square = image.crop((0, CROP_TOP, width, CROP_TOP + width))
    small = square.resize((imwidth, imwidth), Image.BILINEAR)
    tile = Image.new("RGB", image.size, (0, 0, 0))
    tile.paste(small.resize((width, width), Image.NEAREST), (0, CROP_TOP))
    return tile


def texture_sheet(seed: int, identities: Sequence[int], strengths: Sequence[float],
                  image_index: int = 0, imwidth: Optional[int] = 64) -> Image.Image:
    """Rows: ``strengths``; columns: ``identities`` (then their network views at
    ``imwidth`` unless it is None).

    Raises:
        ValueError: a strength is negative or not finite.
    """
    tiles: List[Image.Image] = []
    for strength in strengths:
        row = []
        for identity in identities:
            renderer = FaceRenderer(sample_identity(identity_rng(seed, identity)), strength)
            image, _ = renderer.render(sample_variation(image_rng(seed, identity, image_index)))
            row.append(image)
        if imwidth:
            row += [network_view(image, imwidth) for image in row]
        label = ImageDraw.Draw(row[0])
        label.rectangle((0, 0, 112, 14), fill=(0, 0, 0))
        label.text((3, 2), f"texture_strength {strength:g}", fill=(255, 255, 255))
        tiles += row
    return contact_sheet(tiles, columns=len(tiles) // len(strengths))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="SyntheticFaces seed (default 0)")
    parser.add_argument("--identities", type=int, nargs="+", default=[0, 2, 11, 13],
                        help="identity ids, one column each (default 0 2 11 13)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[1.0, 2.0, 4.0],
                        help="texture strengths, one row each (default 1 2 4)")
    parser.add_argument("--image-index", type=int, default=0,
                        help="which image of each identity (pose, expression; default 0)")
    parser.add_argument("--network-view", type=int, default=64, metavar="N",
                        help="also show the images at imwidth N (default 64; 0: off)")
    parser.add_argument("--output", type=Path, default=Path("docs/synthetic-faces-texture.jpg"),
                        help="image to write, format from the extension (default docs/synthetic-faces-texture.jpg)")
    args = parser.parse_args(argv)
    if args.network_view < 0 or args.image_index < 0 or min(args.identities) < 0:
        parser.error("--network-view, --image-index and --identities must be >= 0")
    for strength in args.strengths:
        try:
            check_texture_strength(strength)
        except ValueError as err:
            parser.error(f"--strengths: {err}")
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    sheet = texture_sheet(args.seed, args.identities, args.strengths, args.image_index,
                          args.network_view or None)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output)
    _logger.info("wrote %s (%d x %d)", args.output, *sheet.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
