"""Scoring against the training set, the only stages that read it: the training set under the
similarity (:class:`Reference`), each sample's nearest training images (:class:`Score`), and the
Filter baseline on the surrogate's pool (:class:`PoolFilter`)."""

from __future__ import annotations

import numpy as np
import torch

from side_core import distributed
from side_core.allocation import near_identical_groups
from side_core.errors import SideError
from side_core.kinds.clusters import NearIdentical
from side_core.kinds.generation import Generation
from side_core.metrics import BAND_RULE, Bands, bands_from_train, distinct_curve, in_band, summarize
from side_core.neighbours import QueryBlocks, nearest_others, search
from side_core.run import Run, Stored
from side_core.store import read_tensors, stage_key, write_array, write_tensors

VECTORS = "vectors.safetensors"


class Reference(Stored):
    """The training set under the run's similarity: its vectors, each image's similarity to its nearest
    other image, and the bands calibrated from them (unless the run fixes them). Files:
    ``vectors.safetensors``, ``nn_similarity.npy``, ``nn_index.npy``; summary ``bands``, ``n_train``."""

    KIND = "reference"
    MODEL_SPECIFIC = False

    @classmethod
    def make(cls, run: Run) -> Reference:
        data = run.data
        if data is None:
            raise SideError("Scoring needs the training set: load one (e.g. 'default') for this run.")
        inputs = {
            "data": stage_key({"facts": data.facts(), "names": data.names}),
            "similarity": run.similarity.to_dict(),
            "bands": run.fixed_bands.to_dict() if run.fixed_bands else None,
            "band_rule": None if run.fixed_bands else BAND_RULE,
        }
        reference = run.stage(cls, inputs)

        def make(stage) -> dict:
            vectors = run.similarity.vectors(data.images)
            nn_sim, nn_idx = nearest_others(vectors, device=run.model.device)
            bands = run.fixed_bands or bands_from_train(nn_sim)
            write_tensors(stage.file(VECTORS), {"vectors": vectors})
            write_array(stage.file("nn_similarity.npy"), nn_sim)
            write_array(stage.file("nn_index.npy"), nn_idx)
            return {"bands": bands.to_dict(), "n_train": len(data)}

        return run.build(reference, make)

    def bands(self) -> Bands:
        return Bands.from_dict(self.summary()["bands"])

    def vectors(self) -> torch.Tensor:
        """(M, D) float32: each training image's unit vector under the similarity."""
        return read_tensors(self.file(VECTORS))["vectors"]

    def nearest_other(self) -> np.ndarray:
        """(M,) float32: each training image's similarity to its nearest other training image."""
        return self.array("nn_similarity.npy")


def bands(run: Run) -> Bands:
    """The run's similarity bands (its reference stage's, made first if need be)."""
    return Reference.make(run).bands()


class Score(Stored):
    """A generation's nearest training images and its AMS/UMS/p95/extracted (side_core.metrics).
    Files: ``similarity.npy``, ``index.npy`` (N, k) and ``first_hit_<band>.npy`` (M,) per band."""

    KIND = "score"
    MODEL_SPECIFIC = False

    @classmethod
    def make(cls, run: Run, generation: Generation, k: int = 3) -> Score:
        reference = Reference.make(run)
        score = run.stage(cls, {"generation": generation.name, "reference": reference.name, "k": k})

        def make(stage) -> dict:
            bands = reference.bands()
            queries = QueryBlocks(  # one shard at a time: memory does not grow with N_G
                generation.sharding.sizes, lambda i: run.similarity.vectors(generation.shard_images(i))
            )
            world = distributed.current()
            result = search(queries, reference.vectors(), k=k, bands=bands, device=run.model.device, world=world)
            if not world.is_main:
                return {}
            write_array(stage.file("similarity.npy"), result.similarity)
            write_array(stage.file("index.npy"), result.index)
            for name, first in result.first_hit.items():
                write_array(stage.file(f"first_hit_{name}.npy"), first)
            return summarize(result.max_similarity, result.band_hits, bands)

        return run.build(score, make, together=True)

    @property
    def generation(self) -> Generation:
        return self.link("generation", Generation)

    @property
    def bands(self) -> Bands:
        return self.link("reference", Reference).bands()

    def first_hit(self, band: str = "high") -> np.ndarray:
        """(M,) int64: index of the first sample in ``band`` with each training image (-1: none)."""
        return self.array(f"first_hit_{band}.npy")

    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) similarities (descending) and (N, k) training indices of the scored samples."""
        return self.array("similarity.npy"), self.array("index.npy")

    def copied(self) -> np.ndarray:
        """(N,) int64: the training image each sample copies (its nearest, in the high band), or -1."""
        similarity, index = self.neighbours()
        return np.where(in_band(similarity[:, 0], self.bands.high), index[:, 0], -1)


class PoolFilter(Stored):
    """The Filter baseline on a pool of plain samples: those with a near-identical partner in the pool
    are reported as memorized, with no classifier and no guided sample. A stage of its own (it reads
    the whole pool), so a stored comparison, e.g. each app rerun, only reads it.

    Summary: ``flagged``, ``groups``, ``precision_high``, ``extracted`` and ``curve``, entry n-1 of
    which counts the distinct high-band training images among the samples flagged once only the first
    n pool samples exist (a sample is flagged when both it and its partner are drawn); ``plain_curve``:
    the same pool read as plain sampling (UnCond at the budget SIDE spent on it)."""

    KIND = "filter"

    @classmethod
    def make(cls, run: Run, near_identical: NearIdentical) -> PoolFilter:
        synthetic = near_identical.features.generation
        pool_score = Score.make(run, synthetic)
        pool_filter = run.stage(cls, {"pool": near_identical.name, "score": pool_score.name})

        def make(stage) -> dict:
            partner = near_identical.partner()
            high = pool_score.bands.high
            copy = in_band(pool_score.neighbours()[0][:, 0], high)
            flagged = np.flatnonzero(partner >= 0)
            flagged_at = np.maximum(flagged, partner[flagged])  # reported once its partner is drawn too
            # every training image in the high band of a flagged sample counts, as in the methods' rows
            train_vectors = pool_score.link("reference", Reference).vectors()
            similarity = run.similarity.vectors(synthetic.images()[flagged]) @ train_vectors.T
            rows, images = np.nonzero(in_band(similarity.numpy(), high))
            first_hit = np.full(len(run.data), len(partner), dtype=np.int64)
            np.minimum.at(first_hit, images, flagged_at[rows])
            first_hit[first_hit == len(partner)] = -1
            return {
                "n_generated": len(partner),
                "near_identical": near_identical.summary()["near_identical"],
                "flagged": len(flagged),
                "groups": int(near_identical_groups(partner).max() + 1),
                "precision_high": round(100 * float(copy[flagged].mean()), 3) if len(flagged) else None,
                "extracted": np.flatnonzero(first_hit >= 0).tolist(),
                "curve": distinct_curve(first_hit, len(partner)).tolist(),
                "plain_curve": distinct_curve(pool_score.first_hit(), len(partner)).tolist(),
            }

        return run.build(pool_filter, make)

    @property
    def pool_score(self) -> Score:
        """The score of the pool's samples, read as plain sampling."""
        return self.link("score", Score)
