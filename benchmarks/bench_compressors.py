"""asv: vector compressors (one message from a Gaussian vector) at two sizes, and their μ."""
import numpy as np

from cgdbench import compressors
from cgdbench.compressors.vector import encode_loop

SPECS = ["top-k:0.001", "rand-k:0.001", "sign", "qsgd:4", "natural", "sketch-top-k:0.001"]


class CompressorEncode:
    """Seconds for 10 messages (the worker's side: selection, quantisation, sketching)."""

    params = (SPECS, [100_000, 1_000_000])
    param_names = ["compressor", "d"]

    def setup(self, spec, d):
        self.comp = compressors.make_vector(spec, d)
        self.v = np.random.default_rng(0).standard_normal(d)
        self.bufs = self.comp.buffers()
        encode_loop(*self.comp.kernel_args(), np.uint64(0), self.v, 1, *self.bufs)  # compile

    def time_encode(self, spec, d):
        encode_loop(*self.comp.kernel_args(), np.uint64(0), self.v, 10, *self.bufs)


class CompressorQuality:
    """Deterministic quality of each compressor on Gaussian vectors (seed 0), all positive.

    ``track_mu``: the measured contraction μ (E‖C(x) − x‖² = (1 − μ)‖x‖²) of the form
    the saddle paper's Algorithm 1 uses: the compressor itself when it is biased, C/(1+ω)
    for an unbiased one (μ = 1/(1+ω)).  The unbiased compressor's own 1 − ω is negative
    for ω > 1, which asv's comparison mishandles; ``track_omega`` reports ω instead.
    """

    params = (SPECS + ["rand-k-unscaled:0.001"],)
    param_names = ["compressor"]

    def track_mu(self, spec):
        c = compressors.make_vector(spec, 10_000)
        c = c.contractive() if c.unbiased else c
        return compressors.measure(c, samples=50, seed=0)["mu_measured"]

    track_mu.unit = "mu"

    def track_bits_fraction(self, spec):
        c = compressors.make_vector(spec, 10_000)
        return c.bits_up(32) / (32 * c.d)

    track_bits_fraction.unit = "fraction of 32d"


class CompressorVariance:
    """Measured variance ω of the unbiased compressors (E‖C(x) − x‖² = ω‖x‖²), seed 0."""

    params = ([s for s in SPECS + ["rand-k-unscaled:0.001"] if compressors.make_vector(s, 10).unbiased],)
    param_names = ["compressor"]

    def track_omega(self, spec):
        return compressors.measure(compressors.make_vector(spec, 10_000), samples=50, seed=0)["omega_measured"]

    track_omega.unit = "omega"
