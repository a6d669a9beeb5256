"""An image file's size and channels from its header, without decoding its pixels.

Reads the few bytes that say how large an image is (PNG's IHDR chunk, JPEG's
start-of-frame segment, GIF's logical screen, BMP's info header), so that a
folder of large photos is scanned in the time it takes to open the files.
"""

import struct

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic);
# C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers that stand alone, with no length after them.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # By colour type; a palette decodes to RGB.


def _read_png(f):
    # After the 8-byte signature `image_header` matched: the IHDR chunk's length, type and fields.
    head = f.read(18)
    if len(head) < 18 or head[4:8] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[8:16])
    channels = _PNG_CHANNELS.get(head[17])
    return (height, width, channels) if channels else None


def _read_jpeg(f):
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte == b"\xff":  # Fill bytes before a marker.
            marker = f.read(1)
            if marker != b"\xff":
                break
        else:
            return None
        code = marker[0] if marker else None
        if code is None or code == 0xD9:  # End of file or image before any frame.
            return None
        if code in _JPEG_STANDALONE:
            continue
        length = f.read(2)
        if len(length) < 2:
            return None
        (size,) = struct.unpack(">H", length)
        if code in _JPEG_FRAMES:
            frame = f.read(6)
            if len(frame) < 6:
                return None
            _, height, width, components = struct.unpack(">BHHB", frame)
            return (height, width, components) if height and width and components else None
        if size < 2:
            return None
        f.seek(size - 2, 1)


def _read_gif(f):
    f.seek(6)
    screen = f.read(4)
    if len(screen) < 4:
        return None
    width, height = struct.unpack("<HH", screen)
    return height, width, 3


def _read_bmp(f):
    f.seek(14)
    header = f.read(16)
    if len(header) < 4:
        return None
    (size,) = struct.unpack("<I", header[:4])
    if size == 12 and len(header) >= 12:  # OS/2 core header.
        width, height, _, bits = struct.unpack("<HHHH", header[4:12])
    elif size >= 40 and len(header) >= 16:
        width, height, _, bits = struct.unpack("<iiHH", header[4:16])
    else:
        return None
    return abs(height), width, {8: 1, 32: 4}.get(bits, 3)


_READERS = ((b"\x89PNG\r\n\x1a\n", _read_png), (b"\xff\xd8", _read_jpeg), (b"GIF87a", _read_gif),
            (b"GIF89a", _read_gif), (b"BM", _read_bmp))


def image_header(path):
    """`(height, width, channels)` of a PNG, JPEG, GIF or BMP file from its header, or None.

    None: the file cannot be opened, is none of these formats, or its header
    is cut short or malformed. A file with a sound header can still fail to
    decode later (a cut or damaged body).
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            for signature, reader in _READERS:
                if magic.startswith(signature):
                    shape = reader(f)
                    break
            else:
                return None
    except OSError:
        return None
    if shape is None or min(shape[:2]) < 1:
        return None
    return tuple(int(v) for v in shape)
