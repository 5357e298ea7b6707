"""Installs the product's top-level folders as subpackages of one ``ttsprep`` namespace.

``stages/`` becomes ``ttsprep.stages``, ``train/`` becomes ``ttsprep.train`` and so on: nothing installs a generic
top-level module (``stages``, ``train``, ``models``) that could collide with another project's. Every package found
under these folders is installed; the metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = ("pipelines", "stages", "aligners", "models", "train")

setup(
    packages=[f"ttsprep.{package}" for package in find_packages(include=[f"{folder}*" for folder in FOLDERS])],
    package_dir={f"ttsprep.{folder}": folder for folder in FOLDERS},
)
