"""Replays the random draws the official code made (recorded in the fixtures)."""
import numpy as np
import torch

from seem_ros.model.visual_sampler import DecoderRandomness


class ReplayedRandomness(DecoderRandomness):
    def __init__(self, case: np.lib.npyio.NpzFile):
        super().__init__()
        self.case = case
        self.points_drawn = 0
        self.query_draws = 0
        self.memory_draws = 0

    def prompt_points(self, mask, max_len):
        recorded = self.case[f"rec/rand_sample/{self.points_drawn}/out"]
        self.points_drawn += 1
        recorded = torch.from_numpy(recorded).float().t().to(mask.device)
        if int(mask.sum()) <= max_len:
            # nothing random is drawn: our points must be the official ones
            ours = super().prompt_points(mask, max_len)
            assert ours.shape == recorded.shape and torch.allclose(ours, recorded), "prompt pixels differ"
            return ours
        assert len(recorded) == max_len
        return recorded

    def spatial_query_indices(self, num_object_queries, count, device):
        recorded = torch.from_numpy(self.case[f"rec/var_rand_idx/{self.query_draws}"])
        self.query_draws += 1
        assert len(recorded) == count
        return recorded.to(device)

    def memory_indices(self, num_prompts, count):
        recorded = torch.from_numpy(self.case[f"rec/memory_indices/{self.memory_draws}"])
        self.memory_draws += 1
        assert len(recorded) == count
        return recorded

    def assert_all_used(self):
        keys = self.case.files
        assert f"rec/rand_sample/{self.points_drawn}/out" not in keys, "fewer prompt samplings than official"
        assert f"rec/var_rand_idx/{self.query_draws}" not in keys, "fewer spatial query draws than official"
        assert f"rec/memory_indices/{self.memory_draws}" not in keys, "fewer memory draws than official"
