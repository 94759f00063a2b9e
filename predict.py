"""Landmarks, correspondences and colour maps of a trained network on your own images.

    python predict.py landmarks --resume REGRESSOR face1.jpg face2.png my_faces/
    python predict.py landmarks --resume REGRESSOR --box 40,60,210,230 photo.jpg
    python predict.py landmarks --resume REGRESSOR --boxes boxes.csv photos/
    python predict.py match --resume EMBEDDING --source a.jpg --points "40,52;61,50" b.jpg
    python predict.py embed --resume EMBEDDING my_faces/

Each face is a region of an image: the whole image, ``--box x0,y0,x1,y1`` or the rows of
``--boxes`` (CSV ``image,x0,y0,x1,y1``). It is read and resized exactly as the training
data was (``trainer.inference``: the config's ``imwidth`` and ``crop``), and every result is
given in pixels of the upright original image (EXIF orientation applied). ``landmarks``
needs a regressor checkpoint; ``match`` and ``embed`` take an embedding or the embedding
part of a regressor. Results go to ``--output_dir`` (default ``predictions/``);
docs/predict.md describes the files.
"""
import argparse
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from trainer.builders import build_model, embedding_part
from trainer.inference import (COLOUR_MAPS, FaceRegions, colour_maps, face_loader,
                               match_into_targets, predict_landmarks, source_cells,
                               training_geometry)
from trainer.inference_io import (assign_boxes, collect_images, output_stems, parse_box,
                                  parse_points, save_colour_map, write_json, write_landmarks,
                                  write_matches)
from trainer.run_config import resolve_evaluation
from utils.checkpoint import CheckpointError, load_weights_into
from utils.device import resolve_device
from utils.errors import USER_ERRORS, report_user_error
from utils.logging_setup import setup_logging
from utils.registry import ConfigError

_logger = logging.getLogger("predict")
DEFAULT_OUTPUT = "predictions"
DEFAULT_BATCH = 32


def _common(parser: argparse.ArgumentParser, checkpoint_kind: str) -> None:
    parser.add_argument("-r", "--resume", required=True,
                        help=f"{checkpoint_kind} checkpoint: a file, a folder of runs, a glob "
                        f"or a released model's name")
    parser.add_argument("-c", "--config", help="JSON config (default: the checkpoint's own; "
                        "needed for released checkpoints and bare state dicts)")
    parser.add_argument("-d", "--device", help="cpu, cuda, cuda:N or a GPU id")
    parser.add_argument("-b", "--batch_size", type=int, default=DEFAULT_BATCH,
                        help=f"faces per batch (default {DEFAULT_BATCH})")
    parser.add_argument("--workers", type=int, default=0,
                        help="image-reading worker processes (default 0: the main process)")
    parser.add_argument("--output_dir", default=DEFAULT_OUTPUT,
                        help=f"where the results go (default {DEFAULT_OUTPUT}/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config key, e.g. --set dataset.args.imwidth=100")


def _regions(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument("--box", metavar="X0,Y0,X1,Y1",
                        help=f"the face region of {whose} in pixels of the upright image "
                        f"(default: the whole image)")
    parser.add_argument("--boxes", metavar="FILE", help="CSV rows image,x0,y0,x1,y1 (one "
                        "face each; the image by its path as given or its file name); "
                        "images not listed use --box or the whole image")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    landmarks = commands.add_parser("landmarks", help="landmarks of each face (a regressor)")
    _common(landmarks, "landmark regressor")
    landmarks.add_argument("images", nargs="+", help="image files or folders")
    _regions(landmarks, "every image")
    match = commands.add_parser("match", help="the match of source points in each target")
    _common(match, "embedding (or regressor)")
    match.add_argument("--source", required=True, help="the source image")
    match.add_argument("--points", required=True, metavar='"X,Y;X,Y"',
                       help="source points, pixels of the upright source image")
    match.add_argument("--source_box", metavar="X0,Y0,X1,Y1",
                       help="the face region of the source (default: the whole image)")
    match.add_argument("targets", nargs="+", help="target image files or folders")
    _regions(match, "every target")
    embed = commands.add_parser("embed", help="the embedding's colour map of each face")
    _common(embed, "embedding (or regressor)")
    embed.add_argument("images", nargs="+", help="image files or folders")
    _regions(embed, "every image")
    embed.add_argument("--colormap", choices=COLOUR_MAPS, default=COLOUR_MAPS[0],
                       help="first three channels (default) or a fixed random projection")
    return parser.parse_args(argv)


def load_network(args: argparse.Namespace, device: torch.device, regressor: bool):
    """(network on ``device`` with the ``--resume`` weights, config path, ``Geometry``).

    ``--resume`` is a file, a folder of runs, a glob or a released model's name
    (``utils.checkpoint_search.require_checkpoint``). ``regressor``: the checkpoint must be a landmark regressor; an embedding raises
    ``CheckpointError`` saying to use ``match`` / ``embed`` or a regressor checkpoint.
    Otherwise the embedding (of a regressor: its embedding part) is returned."""
    run = resolve_evaluation(args.config, args.resume, args.set, device)
    config, config_path, resume, state = run.config, run.path, run.checkpoint, run.state
    embedding_only = not any(".wrapped_module." in f".{key}" for key in state["state_dict"])
    if regressor and ("keypoint_regressor" not in config or embedding_only):
        raise CheckpointError(
            f"--resume {args.resume} is an embedding checkpoint (no keypoint regressor in "
            f"{'its weights' if embedding_only else config_path}): use it with 'predict.py "
            f"match' or 'predict.py embed', or give 'predict.py landmarks' a regressor "
            f"checkpoint (trained with a *-keypoints config)")
    network = build_model(config, config_path).to(device)
    load_weights_into(network, resume, device, source="--resume", state=state)
    geometry = training_geometry(config, config_path)
    if not regressor:
        network = embedding_part(network, config)
    return network, config_path, geometry


def _reader(regions: FaceRegions):
    """Image path -> its upright RGB picture, read as the faces were."""
    first = {}
    for index, path in enumerate(regions.image_paths):
        first.setdefault(path, index)
    return lambda path: regions.open_image(first[path])


def _progress(results, loader, what: str):
    """``results`` (one per batch of ``loader``) under a progress bar (on a terminal)."""
    return tqdm(results, total=len(loader), desc=what, unit="batch", disable=None, leave=False)


def _gathered(results, loader, what: str):
    """(regions (F, 4), points (F, K, 2)) numpy, over the batches of ``results`` (in the
    loader's order, which is the faces' order)."""
    regions, points = [], []
    for _, batch_regions, batch_points in _progress(results, loader, what):
        regions.append(batch_regions)
        points.append(batch_points)
    return torch.cat(regions).numpy(), torch.cat(points).numpy()


def run_landmarks(args: argparse.Namespace, device: torch.device) -> None:
    faces = assign_boxes(collect_images(args.images), args.box, args.boxes)
    model, config_path, geometry = load_network(args, device, regressor=True)
    regions = FaceRegions(faces, geometry.imwidth, geometry.crop)
    loader = face_loader(regions, args.batch_size, device, args.workers)
    boxes, landmarks = _gathered(predict_landmarks(model, loader, geometry, device), loader,
                                 "landmarks")
    about = {"checkpoint": str(args.resume), "config": str(config_path),
             "imwidth": geometry.imwidth, "crop": geometry.crop}
    output_dir = Path(args.output_dir)
    write_landmarks(output_dir, faces, boxes, landmarks, _reader(regions), about)
    _logger.info("landmarks of %d face(s) in %d image(s): %s (landmarks.csv, landmarks.json, "
                 "*_landmarks.png)", len(faces), len(set(p for p, _ in faces)), output_dir)


def run_match(args: argparse.Namespace, device: torch.device) -> None:
    points = parse_points(args.points)
    source_box = parse_box(args.source_box, "--source_box") if args.source_box else None
    source_path = Path(args.source)
    if source_path.is_dir():
        raise ConfigError(f"--source {source_path} is a folder; give one image file")
    collect_images([args.source])  # a missing source is named here
    faces = assign_boxes(collect_images(args.targets), args.box, args.boxes)
    embedding, config_path, geometry = load_network(args, device, regressor=False)
    source = FaceRegions([(source_path, source_box)], geometry.imwidth, geometry.crop)
    first = next(iter(face_loader(source, 1, device)))
    points_in = source_cells(points, first["box"][0], geometry, args.source)
    regions = FaceRegions(faces, geometry.imwidth, geometry.crop)
    loader = face_loader(regions, args.batch_size, device, args.workers)
    boxes, matched = _gathered(
        match_into_targets(embedding, first, points_in, loader, geometry, device), loader,
        "match")
    about = {"checkpoint": str(args.resume), "config": str(config_path),
             "imwidth": geometry.imwidth, "crop": geometry.crop,
             "source_box": first["box"][0].tolist()}
    open_target = _reader(regions)

    def open_image(path):
        return source.open_image(0) if path == source_path else open_target(path)

    write_matches(Path(args.output_dir), source_path, points.numpy(), faces, boxes, matched,
                  open_image, about)
    _logger.info("matches of %d point(s) in %d target face(s): %s (matches.csv, matches.json, "
                 "*_matches.png)", len(points), len(faces), args.output_dir)


def run_embed(args: argparse.Namespace, device: torch.device) -> None:
    faces = assign_boxes(collect_images(args.images), args.box, args.boxes)
    embedding, config_path, geometry = load_network(args, device, regressor=False)
    regions = FaceRegions(faces, geometry.imwidth, geometry.crop)
    loader = face_loader(regions, args.batch_size, device, args.workers)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stems = output_stems([path for path, _ in faces])
    counts, written = {}, []
    for indices, panels in _progress(
            colour_maps(embedding, loader, geometry, device, args.colormap), loader, "embed"):
        for index, panel in zip(indices.tolist(), panels):
            path = faces[index][0]
            number = counts[path] = counts.get(path, -1) + 1
            name = f"{stems[path]}{f'-{number}' if number else ''}_embedding.png"
            save_colour_map(output_dir / name, panel)
            written.append({"image": str(path), "face": number, "file": name})
    write_json(output_dir / "embedding.json",
               {"checkpoint": str(args.resume), "config": str(config_path),
                "imwidth": geometry.imwidth, "crop": geometry.crop,
                "colormap": args.colormap, "images": written})
    _logger.info("colour maps of %d face(s): %s (*_embedding.png)", len(faces), output_dir)


COMMANDS = {"landmarks": run_landmarks, "match": run_match, "embed": run_embed}


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        COMMANDS[args.command](args, resolve_device(args.device))
    except USER_ERRORS as err:
        return report_user_error(_logger, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
