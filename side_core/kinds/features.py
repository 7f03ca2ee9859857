"""Per-sample features of a generation (side_core.embed), and their 2-D map (side_core.cluster.map_2d)."""

from __future__ import annotations

import numpy as np

from side_core import distributed
from side_core.cluster import map_2d
from side_core.embed import FEATURES, embed
from side_core.kinds.generation import Generation
from side_core.run import Run, Stored
from side_core.store import write_array

VECTORS = "features.npy"


class Features(Stored):
    """A generation's samples embedded with one feature extractor. File: ``features.npy`` (N, D) float32."""

    KIND = "features"

    @classmethod
    def make(cls, run: Run, generation: Generation, feature: str) -> Features:
        extractor = FEATURES.get(feature)
        # which SSCD file made them is part of their key; None for the extractors that need no file
        sscd = run.sscd_path if extractor.needs_sscd_file else None
        features = run.stage(cls, {"generation": generation.name, "feature": feature, "sscd": sscd})

        def make(stage) -> dict:
            vectors = embed(generation.images(), feature, run.model, run.sscd_path, world=distributed.current())
            if distributed.is_main():
                write_array(stage.file(VECTORS), vectors)
            return {}

        return run.build(features, make, together=True)

    @property
    def feature(self) -> str:
        return self.inputs["feature"]

    @property
    def generation(self) -> Generation:
        return self.link("generation", Generation)

    def vectors(self) -> np.ndarray:
        """(N, D) float32: each sample's features."""
        return self.array(VECTORS)


class Map2D(Stored):
    """The samples' features laid out in 2-D ("pca" or "umap"). File: ``xy.npy`` (N, 2) float32."""

    KIND = "map"

    @classmethod
    def make(cls, run: Run, features: Features, method: str = "umap", seed: int = 0) -> Map2D:
        points = run.stage(cls, {"features": features.name, "method": method, "seed": seed})

        def make(stage) -> dict:
            write_array(stage.file("xy.npy"), map_2d(features.vectors(), method, seed))
            return {}

        return run.build(points, make)

    def points(self) -> np.ndarray:
        """(N, 2) float32: each sample's position on the map."""
        return self.array("xy.npy")
