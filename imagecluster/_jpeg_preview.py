"""A camera JPEG's own smaller copy of the photo, decoded instead of the photo.

Decoding a 12 MP JPEG is bounded by libjpeg's entropy decoding of the whole
file, at any scale: about 40 CPU-ms on a 2-core laptop, four times the
network's share. Many cameras store a second, small JPEG of the same picture
after the photo (Sony, for one, a 1616 x 1080 one), listed in the APP2 "MPF"
segment of CIPA DC-007 as a *large thumbnail*; exiftool shows it as
``PreviewImage``. Decoding that costs about 5 ms and gives the network the same
picture, as a RAW file's embedded preview does (:mod:`imagecluster._raw`).

It stands for the photo only when nothing speaks against it:

- its MPF type is a large thumbnail: never a panorama frame, the other view of
  a stereo pair, or an HDR gain map (Pillow leaves Ultra HDR files plain JPEGs);
- both its sides are at least the size wanted;
- its shape is the photo's (aspect ratio within :data:`ASPECT_TOLERANCE`): a
  preview an editor left behind after cropping, or a letterboxed one, is not
  used; nor one stored turned when the photo's orientation does not turn it;
- it decodes. The caller falls back to the photo itself on any failure.
"""

from ._raw import upright_preview

__all__ = ["ASPECT_TOLERANCE", "decode_preview", "preview_frame"]

#: How far a preview's aspect ratio may be from the photo's, relative. Sony's
#: 1616 x 1080 preview of a 3:2 photo is 0.3 % off, a 640 x 424 one 0.6 %;
#: a crop to another shape, or a letterboxed preview, is far more.
ASPECT_TOLERANCE = 0.01

_LARGE_THUMBNAILS = frozenset({"Large Thumbnail (VGA Equivalent)", "Large Thumbnail (Full HD Equivalent)"})
_MP_ENTRIES = 0xB002  # MPF tag: the list of the file's images
_ORIENTATION = 0x0112  # EXIF tag


def preview_frame(im):
    """The frame number of the first large thumbnail ``im`` lists, or None (not a multi-picture JPEG, or none).

    Reads only what Pillow parsed when it opened the file: no seek, no decode.
    """
    mpinfo = getattr(im, "mpinfo", None)
    if not mpinfo:
        return None
    for k, entry in enumerate(mpinfo.get(_MP_ENTRIES) or ()):
        if k and entry.get("Attribute", {}).get("MPType") in _LARGE_THUMBNAILS:
            return k
    return None


def decode_preview(im, frame, size):
    """Decode frame ``frame`` of the open multi-picture JPEG ``im`` for the photo, or None when it cannot stand for it.

    Parameters
    ----------
    im : PIL.MpoImagePlugin.MpoImageFile
        Opened, not loaded, on its first frame (the photo). It is left on
        ``frame``: open the file again to decode the photo itself.
    frame : int
        From :func:`preview_frame`.
    size : int
        Smallest side wanted, in pixels; the preview is decoded at 1/2, 1/4 or
        1/8 scale as far as keeps both sides at least that.

    Returns
    -------
    PIL.Image.Image or None
        RGB, upright by the photo's EXIF orientation: cameras store the
        preview as they store the photo, so the photo's tag speaks for both
        (the preview's own EXIF, if any, is not read), unless the preview's
        shape shows it was stored turned already.

    Raises
    ------
    Exception
        Whatever Pillow raises for a damaged preview.
    """
    photo_size = im.size
    orientation = _orientation(im)
    im.seek(frame)
    if min(im.size) < size or not _same_shape(im.size, photo_size, orientation):
        return None
    im.draft("RGB", (size, size))
    return upright_preview(im.convert("RGB"), orientation, photo_size)


def _same_shape(preview_size, photo_size, orientation):
    """Whether the preview has the photo's aspect ratio, either way round.

    A camera may store the preview turned already, but only a photo whose
    orientation turns it (5-8) has a reason to: a turned preview of a photo
    that is not turned is not the photo as the camera saw it.
    """
    turned = (preview_size[0] > preview_size[1]) != (photo_size[0] > photo_size[1])
    if turned and orientation not in (5, 6, 7, 8):
        return False
    long_p, short_p = max(preview_size), min(preview_size)
    long_f, short_f = max(photo_size), min(photo_size)
    return abs((long_p * short_f) / (short_p * long_f) - 1) <= ASPECT_TOLERANCE


def _orientation(im):
    """The photo's EXIF orientation; 1 (as stored) when its EXIF block is unreadable, as for the photo itself."""
    try:
        return im.getexif().get(_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - untrusted metadata; its parsers raise anything
        return 1

