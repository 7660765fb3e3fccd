"""What a file is, from its first bytes (never its name): one place for weight loading and convert.

A user who passes a caffemodel where an archive is expected, or a JPEG to `convert`, should be
told what the file looks like and what to run, not "invalid wire type 7 for field 25427343".
Only the head of the file is read (at most `HEAD_BYTES`), so sniffing is cheap and bounded.
Stdlib only. See docs/security.md.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 4096

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"  # torch.save since PyTorch 1.6, and numpy's .npz
# torch.save before 1.6 (torchvision's 2017 model zoo): a pickled magic number first.
LEGACY_TORCH_SIGNATURE = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
NPY_SIGNATURE = b"\x93NUMPY"

# Kinds `convert` can read; every other kind is refused with its description.
CONVERTIBLE = ("safetensors", "caffemodel", "torch", "hdf5")

# NetParameter fields (caffe.proto) and the wire type each must have: a .caffemodel starts
# with one of them (normally `name`, field 1, or `layer`, field 100).
_NET_FIELDS = {1: 2, 2: 2, 3: 2, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 100: 2}

_DESCRIPTIONS = {
    "safetensors": "a safetensors file",
    "caffemodel": "a Caffe model (protobuf NetParameter)",
    "torch": "a PyTorch checkpoint (torch.save)",
    "hdf5": "an HDF5 file (e.g. Keras weights)",
    "npz": "a NumPy .npz archive",
    "npy": "a NumPy .npy array",
    "zip": "a zip archive",
    "pickle": "a Python pickle (fcn-bench never unpickles files)",
    "jpeg": "a JPEG image",
    "png": "a PNG image",
    "gif": "a GIF image",
    "tiff": "a TIFF image",
    "html": "an HTML page (an error or login page saved instead of the file?)",
    "gzip": "a gzip-compressed file (unpack it first)",
    "bzip2": "a bzip2-compressed file (unpack it first)",
    "xz": "an xz-compressed file (unpack it first)",
    "tar": "a tar archive (unpack it first)",
    "json": "a JSON document",
    "text": "a text file",
    "empty": "an empty file",
    "unknown": "not a format fcn-bench recognises",
}


@dataclass(frozen=True)
class FileKind:
    """`kind` is a short key (see _DESCRIPTIONS); `description` reads well after "is"."""

    kind: str
    description: str

    @property
    def convertible(self) -> bool:
        return self.kind in CONVERTIBLE


def _kind(kind: str) -> FileKind:
    return FileKind(kind, _DESCRIPTIONS[kind])


def sniff_bytes(head: bytes, size: int, path: Path | None = None) -> FileKind:
    """The kind of a file whose first bytes are `head` and whose length is `size`.

    `path` (optional) lets a zip be told apart by its member names (.npz vs torch.save).
    """
    if size == 0 or not head:
        return _kind("empty")
    if head.startswith(HDF5_SIGNATURE):
        return _kind("hdf5")
    if head.startswith(LEGACY_TORCH_SIGNATURE):
        return _kind("torch")
    if head.startswith(ZIP_SIGNATURE):
        return _kind(_zip_kind(path))
    if head.startswith(NPY_SIGNATURE):
        return _kind("npy")
    if _is_safetensors(head, size):
        return _kind("safetensors")
    if head.startswith(b"\xff\xd8\xff"):
        return _kind("jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _kind("png")
    if head.startswith((b"GIF87a", b"GIF89a")):
        return _kind("gif")
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return _kind("tiff")
    if head.startswith(b"\x1f\x8b"):
        return _kind("gzip")
    if head.startswith(b"BZh"):
        return _kind("bzip2")
    if head.startswith(b"\xfd7zXZ\x00"):
        return _kind("xz")
    if len(head) >= 262 and head[257:262] == b"ustar":
        return _kind("tar")
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return _kind("pickle")  # pickle protocol 2..5 opcode PROTO
    text = _as_text(head)
    if text is not None:
        stripped = text.lstrip().lower()
        if stripped.startswith(("<!doctype html", "<html", "<head", "<body")):
            return _kind("html")
        if stripped[:1] in ("{", "["):
            return _kind("json")
    if text is not None:
        return _kind("text")  # a caffemodel's first bytes hold length and key bytes below 32
    if _looks_like_caffemodel(head, size):
        return _kind("caffemodel")
    return _kind("unknown")


def sniff(path: str | Path) -> FileKind:
    """The kind of the file at `path` (reads at most HEAD_BYTES). OSErrors propagate."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    return sniff_bytes(head, path.stat().st_size, path)


def describe(path: str | Path) -> str:
    """'a JPEG image' etc. for messages; 'an unreadable file' if the file cannot be opened."""
    try:
        return sniff(path).description
    except OSError:
        return "an unreadable file"


def _is_safetensors(head: bytes, size: int) -> bool:
    """A little-endian u64 header length that fits the file, then a JSON object."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") <= size - 8


def _zip_kind(path: Path | None) -> str:
    """'npz' (only .npy members), 'torch' (a data.pkl member) or 'zip'; the central directory is
    read, never a member's content. Unreadable zips are called 'zip'."""
    if path is None:
        return "zip"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()[:10000]
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return "zip"
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    if any(name.endswith("data.pkl") for name in names):
        return "torch"
    return "zip"


def _as_text(head: bytes) -> str | None:
    """The head decoded as UTF-8 text with no control bytes other than whitespace, or None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut by the head's end is still text.
        try:
            text = head[:-3].decode("utf-8") if len(head) > 3 else ""
        except UnicodeDecodeError:
            return None
        if not text:
            return None
    if any(ord(char) < 32 and char not in "\t\n\r\f" for char in text):
        return None
    return text


def _varint(head: bytes, pos: int) -> tuple[int, int] | None:
    result = shift = 0
    while pos < len(head) and shift < 64:
        byte = head[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    return None


def _looks_like_caffemodel(head: bytes, size: int) -> bool:
    """Protobuf has no magic: the first field must be a NetParameter field of its wire type (a
    text name, or a layer whose own first field is well formed), followed by well-formed
    protobuf fields (unknown ones allowed, known ones of their wire type). A cut-off file still
    passes (lengths may run past the end: the reader reports the truncation). Random bytes pass
    with a probability well under 1%."""
    pos = 0
    fields = 0
    while pos < len(head) and fields < 8:
        key = _varint(head, pos)
        if key is None:
            return fields > 0
        number, wire = key[0] >> 3, key[0] & 7
        if number == 0 or wire not in (0, 1, 2, 3, 5):
            return False
        if _NET_FIELDS.get(number, wire if fields else -1) != wire:
            return False  # the first field must be known; known fields have their wire type
        pos = key[1]
        if wire == 3:
            return fields > 0  # a group: too rare to be chance after a valid field
        if wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            value = _varint(head, pos)
            if value is None:
                return fields > 0
            pos = value[1]
            if wire == 2:
                payload = head[pos:pos + value[0]]
                if number == 1 and _as_text(payload) is None:
                    return False  # the net's name is text
                if number in (2, 100):
                    return _first_field_ok(payload)  # a layer: enough evidence either way
                pos += value[0]
        fields += 1
    return fields > 0


def _first_field_ok(message: bytes) -> bool:
    """The first field of an embedded message has a small field number and a real wire type."""
    if not message:
        return True
    key = _varint(message, 0)
    return key is not None and 1 <= key[0] >> 3 <= 1000 and key[0] & 7 in (0, 1, 2, 5)


def convert_hint(path: str | Path, kind: FileKind) -> str:
    """What to do with a file of `kind` where an fcn-bench archive was expected."""
    if kind.convertible:
        return (f"convert it first: python cli.py convert {path} "
                f"{Path(path).with_suffix('.safetensors').name}")
    return ("fcn-bench reads weights from .safetensors archives, and `convert` makes them "
            "from Caffe (.caffemodel), PyTorch (.pth), Keras HDF5 (.h5) or safetensors files")


def not_weights_problem(path: str | Path, kind: FileKind) -> str:
    """The one-line problem for a file `convert` cannot read (its kind, what it accepts)."""
    if kind.kind == "pickle":
        return ("is a Python pickle, not a torch.save checkpoint; fcn-bench never unpickles "
                "files (re-save it with torch.save, PyTorch >= 1.6, or as safetensors)")
    if kind.kind == "unknown":
        return ("is not a weights file fcn-bench recognises (not a Caffe model, safetensors, "
                "PyTorch or Keras HDF5 file; perhaps damaged or encrypted)")
    return (f"is {kind.description}, not weights; `convert` reads Caffe (.caffemodel), "
            "PyTorch (.pth), Keras HDF5 (.h5) and safetensors files")
