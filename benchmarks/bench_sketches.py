"""asv: sketch kernels (sample + gather one client's message) at two sizes."""
import numpy as np

from cgdbench import compressors

SKETCHES = ["identity", "rand-1", "rand-k:0.01", "importance-rand-1", "block-rand-k:0.01", "bern-q:0.1"]


class SketchMessages:
    """Seconds for 1000 messages S^k g (sampling plus gather), client 0."""

    params = (SKETCHES, [1_000, 100_000])
    param_names = ["sketch", "d"]
    messages = 1000  # not ``rounds``: asv reserves that name (rounds of its own timing loop)

    def setup(self, sketch, d):
        ptr = np.linspace(0, d, 11).astype(np.int64)  # ten blocks for the block sketches
        self.sk = compressors.make(sketch, d, ptr, np.linspace(1.0, 2.0, d))
        self.g = np.random.default_rng(0).normal(size=d)
        self.sk.messages(self.g, 0, 2)  # compile

    def time_messages(self, sketch, d):
        self.sk.messages(self.g, 0, self.messages)

    def track_values_per_message(self, sketch, d):
        return self.sk.messages(self.g, 0, self.messages)[1] / self.messages

    track_values_per_message.unit = "values"
