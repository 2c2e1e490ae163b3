"""Getting a dump's text off disk: size limit, encodings, binary and foreign files."""

from __future__ import annotations

import codecs
import errno
import gc
import hashlib
import re
import stat
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IngestError

MB = 1024 * 1024  # ingest.max_file_mb counts these
DEFAULT_MAX_BYTES = 100 * MB
_SNIFF = 8192


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a dump is parsed and stored: its hundreds of
    thousands of new, live objects would set off collections that find nothing to free
    (about a third of the run's time). Collection resumes, as it was, afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class RawDump:
    path: Path
    data: bytes
    text: str
    mtime: float
    content_hash: str
    warnings: list[str] = field(default_factory=list)


def read_bytes(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[bytes, float]:
    """The file's bytes and modification time, or an IngestError that says why not."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IngestError(
            "no such file or folder", file=path, hint="Check the path and try again."
        ) from None
    except OSError as exc:
        raise _os_error(path, exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise IngestError("is a folder, not a dump", file=path)
    if not stat.S_ISREG(st.st_mode):
        # opening a FIFO would wait for a writer forever
        raise IngestError("not a regular file (a FIFO, socket or device)", file=path)
    if st.st_size > max_bytes:
        raise IngestError(
            f"file is {st.st_size / MB:.1f} MB, over the limit of {max_bytes / MB:.0f} MB",
            file=path,
            hint="Split the dump, or raise ingest.max_file_mb if it really is one listing.",
        )
    try:
        with path.open("rb") as fh:
            # read one byte past the limit: the file may have grown since stat()
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise _os_error(path, exc) from None
    if len(data) > max_bytes:
        raise IngestError(
            f"file is over the limit of {max_bytes / MB:.0f} MB",
            file=path,
            hint="Split the dump, or raise ingest.max_file_mb.",
        )
    return data, st.st_mtime


def _os_error(path: Path, exc: OSError) -> IngestError:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return IngestError(
            "permission denied: cannot read the file",
            file=path,
            hint=f"Make it readable by this user (uid of the digestbot run), e.g. chmod a+r {path}",
        )
    return IngestError(f"cannot read the file: {exc.strerror or exc}", file=path)


def looks_binary(data: bytes) -> bool:
    head = data[:_SNIFF]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return bool(head) and controls / len(head) > 0.05


_OTHER_THAN_ASCII = re.compile("[^\x00-\x7f\ufffd]")


def decode(path: Path, data: bytes) -> tuple[str, list[str]]:
    """Text in UTF-8 (with or without BOM) or UTF-16 with BOM; Latin-1 with a warning."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError as exc:
            raise IngestError(f"broken UTF-16 text at byte {exc.start}", file=path) from None
    if looks_binary(data):
        raise IngestError(
            "binary file, not a text or JSON dump",
            file=path,
            hint="Give the Daily Papers page saved as text, or the daily_papers API JSON.",
        )
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        bad = exc
    line = data.count(b"\n", 0, bad.start) + 1
    if bad.start >= len(data) - 3 and bad.reason == "unexpected end of data":
        raise IngestError(
            "file ends in the middle of a character: it looks cut off",
            file=path,
            line=line,
            hint="Download or copy the dump again.",
        )
    replaced = data.decode("utf-8-sig", "replace")
    if _OTHER_THAN_ASCII.search(replaced):
        # UTF-8 but for a few broken sequences (an encoded lone surrogate, a cut character):
        # Windows-1252 would garble every other accent and bullet in the file
        return replaced, [
            f"{path}:{line}: broken UTF-8 (byte 0x{data[bad.start]:02x}); the broken "
            "characters were replaced with U+FFFD."
        ]
    try:
        text = data.decode("cp1252")
        name = "Windows-1252"
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        name = "Latin-1"
    warning = (
        f"{path}:{line}: not UTF-8 (byte 0x{data[bad.start]:02x}); decoded as {name}. "
        "Save dumps as UTF-8 to be sure accents come out right."
    )
    return text, [warning]


# every byte but the ASCII control characters, newline and carriage return aside
_NOT_CONTROL = bytes(b for b in range(256) if b >= 32 and b != 127) + b"\n\r"


def free_of_controls(data: bytes) -> bool:
    """Whether UTF-8 or single-byte text holds no control character but line breaks: one
    pass over the bytes instead of one check per line (a control character's code is
    never part of a longer UTF-8 sequence)."""
    return not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not (
        data.translate(None, _NOT_CONTROL)
    )


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_dump(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RawDump:
    data, mtime = read_bytes(path, max_bytes=max_bytes)
    return decode_dump(path, data, mtime, max_bytes=max_bytes)


def gunzip(path: Path, data: bytes, max_bytes: int) -> bytes:
    """A gzip file's contents, up to ``max_bytes``."""
    inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        out = inflate.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise IngestError(
            f"broken gzip file: {exc}",
            file=path,
            hint="Download it again, or decompress it yourself (gunzip) to see what is wrong.",
        ) from None
    if len(out) > max_bytes:
        raise IngestError(
            f"gzip file holds over {max_bytes / MB:.0f} MB",
            file=path,
            hint="Split the dump, or raise ingest.max_file_mb if it really is one listing.",
        )
    if not inflate.eof:
        raise IngestError(
            "gzip file ends early: it looks cut off",
            file=path,
            hint="Download or copy the dump again.",
        )
    return out


def decode_dump(
    path: Path,
    data: bytes,
    mtime: float,
    digest: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> RawDump:
    """The dump's text (a gzip file's, decompressed); ``digest`` is its content hash when the
    caller has it already (or does not need it: "")."""
    if digest is None:
        digest = content_hash(data)
    if data[:2] == b"\x1f\x8b":
        data = gunzip(path, data, max_bytes)
    if not data or data.isspace():  # not data.strip(), which would copy a big file
        raise IngestError(
            "empty file" if not data else "file holds only white space",
            file=path,
            hint="The download or copy probably failed; fetch the dump again.",
        )
    text, warnings = decode(path, data)
    return RawDump(path, data, text, mtime, digest, warnings)
