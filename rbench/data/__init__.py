"""Images in, network-ready arrays out: the photos that ship offline, user folders, and ImageNet preprocessing.

Preprocessing is torchvision's classic evaluation transform done with PIL (resize the shorter side with bilinear
filtering, center-crop, scale to [0, 1], normalize by mean and std), so parity and calibration see exactly what
inference sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rbench.errors import BadInputError, first_line, unknown_choice

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

#: The colour photos in scikit-image's package data: real images that need no download.
BUILTIN_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Preprocess:
    """The evaluation transform: resize the shorter side to ``resize``, center-crop ``size``, normalize."""

    size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """HWC uint8 RGB (or grayscale) in, CHW float32 out."""
        pil = _to_pil(image)
        w, h = pil.size
        scale = self.resize / min(w, h)
        pil = pil.resize((max(self.size, round(w * scale)), max(self.size, round(h * scale))), _bilinear())
        w, h = pil.size
        left, top = (w - self.size) // 2, (h - self.size) // 2
        pil = pil.crop((left, top, left + self.size, top + self.size))
        return self.normalize(np.asarray(pil))

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        """The inverse of ``dataclasses.asdict``, from JSON (a manifest, a checkpoint's metadata)."""
        return cls(size=int(d["size"]), resize=int(d["resize"]), mean=tuple(d["mean"]), std=tuple(d["std"]))

    def normalize(self, rgb: np.ndarray) -> np.ndarray:
        x = rgb.astype(np.float32) / 255.0
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))


def _bilinear():
    from PIL import Image

    return Image.Resampling.BILINEAR


def _to_pil(image: np.ndarray):
    from PIL import Image

    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise BadInputError(f"expected an HxWx3 RGB image, got an array of shape {image.shape}")
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    return Image.fromarray(np.ascontiguousarray(image[..., :3].astype(np.uint8)))


def builtin_photos() -> dict[str, np.ndarray]:
    """scikit-image's colour photos by name, as HWC uint8 arrays."""
    from skimage import data

    return {name: getattr(data, name)() for name in BUILTIN_PHOTOS}


def check_image_folder(folder: str | os.PathLike[str], what: str = "--images") -> Path:
    """A cheap check, before any heavy work, that ``folder`` is a folder holding images directly or in class
    folders (``folder/<class>/<image>``); nothing is decoded yet."""
    folder = Path(folder)
    if folder.is_file():
        raise BadInputError(f"{what} needs a folder of images (or of class folders), not a file: {folder}")
    if not folder.is_dir():
        raise BadInputError(f"{what}: folder not found: {folder}")
    if not image_files(folder) and not labelled_dirs(folder):
        raise BadInputError(
            f"{what}: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder} or in class folders {folder}/<class>/"
        )
    return folder


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def labelled_dirs(folder: Path) -> list[Path]:
    """The class folders of ``folder`` that hold images (``folder/<class>/<image>``), sorted by name."""
    return [d for d in _class_dirs(folder) if image_files(d)]


def read_rgb(path: Path) -> np.ndarray:
    """One image file as an HWC uint8 RGB array; an unreadable or truncated file is bad input."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadInputError(f"cannot read image {path}: {first_line(exc)}") from None


def load_image_folder(folder: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every image directly inside ``folder``, sorted by name, as HWC uint8 RGB arrays."""
    folder = check_image_folder(folder)
    files = image_files(folder)
    if not files:
        raise BadInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return {path.name: read_rgb(path) for path in files}


@dataclass
class ImageSet:
    """Images read from a folder, with labels where it had class folders.

    ``classes`` maps each class folder to its label; ``skipped`` lists loose files beside the class folders (and
    class folders without images), which a labelled set leaves out.
    """

    images: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    classes: dict[str, int] = field(default_factory=dict)
    mapping: str = ""  # how folder names became labels: "class names", "indices", "sorted"
    skipped: list[str] = field(default_factory=list)


def load_images(
    folder: str | os.PathLike[str], class_names: list[str] | None = None, num_classes: int | None = None
) -> ImageSet:
    """A folder of images (no labels), or a labelled ``folder/<class>/<image>`` tree.

    Class folders become labels: by the model's class names where it has them; else folders named by integers are
    those class indices (``7/`` holds class 7); else the sorted folder names are numbered 0, 1, … as torchvision's
    ``ImageFolder`` does. A label outside the model's classes is refused.
    """
    folder = check_image_folder(folder)
    dirs = labelled_dirs(folder)
    if not dirs:
        return ImageSet(load_image_folder(folder))
    classes, mapping = class_labels([d.name for d in dirs], class_names, num_classes)
    skipped = [p.name for p in image_files(folder)] + [f"{d.name}/" for d in _class_dirs(folder) if d not in dirs]
    images: dict[str, np.ndarray] = {}
    labels: list[int] = []
    for directory in dirs:
        found = load_image_folder(directory)
        images.update({f"{directory.name}/{name}": image for name, image in found.items()})
        labels += [classes[directory.name]] * len(found)
    return ImageSet(images, np.asarray(labels, dtype=np.int64), classes, mapping, skipped)


def class_labels(
    names: list[str], class_names: list[str] | None, num_classes: int | None
) -> tuple[dict[str, int], str]:
    if class_names is not None:
        unknown = [n for n in names if n not in class_names]
        if unknown:
            shown = ", ".join(class_names[:5]) + (", …" if len(class_names) > 5 else "")
            raise BadInputError(
                f"class folder(s) {', '.join(unknown)} are not among the model's {len(class_names)} classes ({shown})"
            )
        return {n: class_names.index(n) for n in names}, "class names"
    if all(n.isdigit() for n in names):
        classes, mapping = {n: int(n) for n in names}, "indices"
    else:
        classes, mapping = {n: i for i, n in enumerate(names)}, "sorted"
    limit = num_classes if num_classes is not None else max(classes.values()) + 1
    outside = [n for n, label in classes.items() if label >= limit]
    if outside:
        raise BadInputError(
            f"class folder(s) {', '.join(outside)} give labels outside the model's {limit} classes (0..{limit - 1})"
        )
    return classes, mapping


def preprocess_batch(images: dict[str, np.ndarray], transform: Preprocess) -> np.ndarray:
    """Stack preprocessed images into one NCHW float32 batch."""
    return np.stack([transform(img) for img in images.values()])


def random_inputs(count: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Seeded standard-normal inputs: what a normalized image looks like to a network, in distribution only."""
    return np.random.default_rng(seed).standard_normal((count, *shape), dtype=np.float32)


def augmented_photos(
    count: int,
    transform: Preprocess,
    seed: int = 0,
    images: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """``count`` random-resized crops with random flips of real photos, preprocessed like inference.

    Real, varied images for calibration: noise calibration wrecks INT8 accuracy on photos.
    """
    rng = np.random.default_rng(seed)
    sources = list((images if images is not None else builtin_photos()).values())
    out = np.empty((count, 3, transform.size, transform.size), np.float32)
    for i in range(count):
        pil = _to_pil(sources[i % len(sources)])
        w, h = pil.size
        area = w * h * rng.uniform(0.25, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = int(min(w, round(np.sqrt(area * aspect))))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = pil.crop((left, top, left + cw, top + ch)).resize((transform.size, transform.size), _bilinear())
        rgb = np.asarray(crop)
        if rng.random() < 0.5:
            rgb = rgb[:, ::-1]
        out[i] = transform.normalize(rgb)
    return out


def digits_split(seed: int = 0, val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Indices of scikit-learn's digits in a stratified training and validation split (every class in both, in
    proportion), seeded. Training and INT8 calibration use the same split, so calibration never sees validation."""
    from sklearn.model_selection import train_test_split

    target = digits_arrays()[1]
    train, val = train_test_split(
        np.arange(len(target)), test_size=val_fraction, stratify=target, random_state=seed, shuffle=True
    )
    return np.asarray(train), np.asarray(val)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as 8×8 uint8 grayscale images (0 to 255) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images * (255 / 16)).astype(np.uint8), digits.target.astype(np.int64)


def digits_images(split: str = "train", limit: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """scikit-learn's 1,797 labelled 8×8 digits as RGB uint8 images, from the stratified split of ``seed``
    (``train``: 80%; ``val`` or ``test``: the other 20%).

    Names are ``<index>-<label>.png`` so labels travel with the images.
    """
    if split not in ("train", "val", "test"):
        raise unknown_choice("digits split", split, ("train", "val"))
    images, target = digits_arrays()
    train, val = digits_split(seed)
    index = list(train if split == "train" else val)[:limit]
    return {f"{i}-{target[i]}.png": np.repeat(images[i][..., None], 3, -1) for i in index}
