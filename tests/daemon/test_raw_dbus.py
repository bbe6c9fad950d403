"""RAW files and RAW + JPEG shots through the real daemon on a private bus (issue 16).

The library is ``_raw_library``'s: DNG bursts (with and without an embedded
preview) and two shots saved as ``.DNG`` + ``.JPG``. Over D-Bus, a shot is one
entry of a cluster (the JPEG, the default ``pair_link``), and Fingerprint and
Similar answer for either file of a shot, Similar never listing the asked
photo's own other file.
"""

import asyncio
import os

import numpy as np

from _raw_library import write_raw_library

FAST = {"settle_seconds": 0.2}


def names(paths):
    return sorted(os.path.relpath(p, start=os.path.dirname(os.path.dirname(p))) for p in paths)


def test_a_raw_jpeg_shot_is_one_photo_and_either_file_can_be_asked(tmp_path, start_daemon, client, wait_until):
    lib = tmp_path / "photos"
    files = write_raw_library(lib)
    start_daemon(lib, config=FAST)

    async def main():
        async with client() as ic:
            async def indexed():
                return await ic.get_indexed() == len(files) and await ic.get_pending() == 0

            await wait_until(indexed, what=f"Indexed == {len(files)}")  # every file, both of a pair too
            clusters = [names(c) for c in await ic.call_cluster(0.7)]
            assert clusters == [
                ["dng/dog_1.dng", "dng/dog_2.dng", "dng/dog_3.dng", "pairs/IMG_0001.JPG"],
                ["dng/cat_1.dng", "dng/cat_2.dng", "pairs/IMG_0002.JPG"],
            ]

            raw, jpeg = str(files["pairs/IMG_0001.DNG"]), str(files["pairs/IMG_0001.JPG"])
            fp_raw, fp_jpeg = np.array(await ic.call_fingerprint(raw)), np.array(await ic.call_fingerprint(jpeg))
            assert fp_raw.shape == fp_jpeg.shape == (1280,)
            assert float(fp_raw @ fp_jpeg) >= 0.95  # one shot: the preview and the camera's JPEG agree

            answers = {}
            for asked in (raw, jpeg):
                matches = await ic.call_similar(asked, 0.5)
                answers[asked] = [path for path, _ in matches]
                assert [s for _, s in matches] == sorted((s for _, s in matches), reverse=True)
            # the other dogs, most similar first, and never the other file of IMG_0001 itself
            assert answers[raw] == answers[jpeg], answers
            assert sorted(names(answers[raw])) == ["dng/dog_1.dng", "dng/dog_2.dng", "dng/dog_3.dng"]
            # another shot's pair is listed once, as its JPEG
            cats = await ic.call_similar(str(files["dng/cat_1.dng"]), 0.5)
            assert sorted(names(path for path, _ in cats)) == ["dng/cat_2.dng", "pairs/IMG_0002.JPG"], cats

    asyncio.run(main())
