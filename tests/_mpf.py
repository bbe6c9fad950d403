"""Write camera-style JPEGs that carry a smaller copy of the photo (CIPA DC-007 "MPF"), for tests and benchmarks.

Many cameras write, after the photo's JPEG, a second JPEG of the same picture
(Sony: 1616 x 1080) and list both in an APP2 "MPF" segment: the photo as the
*baseline primary image*, the copy as a *large thumbnail*. Pillow writes the
same structure (``save(..., "MPO", append_images=...)``) but marks every image
after the first "undefined"; :func:`write_mpf_jpeg` then sets the type a
camera would, in place. Pillow and exiftool read the result like a camera's
file, so the tests run the real decoder, not a mock.
"""

import io
import struct

from PIL import Image

#: MP types of CIPA DC-007 (the low 24 bits of an MP entry's attribute).
LARGE_THUMBNAIL_VGA = 0x010001
LARGE_THUMBNAIL_FULL_HD = 0x010002
DISPARITY = 0x020002  # the other view of a stereo pair
UNDEFINED = 0x000000  # what Pillow writes; also what HDR gain maps are marked

_MP_ENTRIES = 0xB002


def write_mpf_jpeg(path, photo, preview, *, mp_type=LARGE_THUMBNAIL_FULL_HD, orientation=1, quality=92, exif=None):
    """Write ``photo`` as a JPEG followed by ``preview`` as its MPF image of type ``mp_type``.

    Parameters
    ----------
    path : pathlib.Path
    photo, preview : PIL.Image.Image
        RGB; stored as given (a camera stores both as the sensor saw them).
    mp_type : int
        The second image's MP type.
    orientation : int
        The photo's EXIF orientation tag (1 writes none).
    quality : int
        JPEG quality of both.
    exif : PIL.Image.Exif or None
        More EXIF for the photo (orientation is set on it).
    """
    exif = exif if exif is not None else Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    # An empty Exif object makes Pillow (11-13) misplace the MPF segment: give none then.
    more = {"exif": exif} if len(exif) else {}
    photo.save(buf, "MPO", save_all=True, append_images=[preview], quality=quality, **more)
    data = bytearray(buf.getvalue())
    set_mp_type(data, 1, mp_type)
    path.write_bytes(bytes(data))


def set_mp_type(data, index, mp_type):
    """Set the MP type of image ``index`` in the MPF segment of the JPEG ``data`` (a bytearray), in place."""
    tiff = data.index(b"MPF\x00") + 4  # offsets in the segment count from its TIFF header
    order = "<" if data[tiff : tiff + 2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, tiff + 4)
    (count,) = struct.unpack_from(order + "H", data, tiff + ifd)
    for k in range(count):
        tag, _type, _n, value = struct.unpack_from(order + "HHII", data, tiff + ifd + 2 + 12 * k)
        if tag == _MP_ENTRIES:
            entry = tiff + value + 16 * index
            (attribute,) = struct.unpack_from(order + "I", data, entry)
            struct.pack_into(order + "I", data, entry, (attribute & 0xFF000000) | mp_type)
            return
    raise ValueError("no MP entry list in the MPF segment")
