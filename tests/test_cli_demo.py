import math

from nce.cli import demo
from nce.density import NCEDensity


def test_demo_density_fits_through_the_estimator(tmp_path, monkeypatch, capsys):
    fits = []
    original = NCEDensity.fit

    def recording_fit(self, X, context=None):
        fits.append(self)
        return original(self, X, context)

    monkeypatch.setattr(NCEDensity, "fit", recording_fit)
    result = demo.run_density(tmp_path, progress=False)
    assert len(fits) == 1 and fits[0].noise_ratio == 10
    assert result["learned_log_z"] == fits[0].log_partition_
    # NCE's learned log Z matches the closed form of the learned model, and the data's.
    assert abs(result["learned_log_z"] - result["true_log_z"]) < 0.05
    assert abs(result["learned_log_z"] - result["data_log_z"]) < 0.1
    assert math.isfinite(result["final_loss"])
    assert (tmp_path / "density.png").stat().st_size > 10_000
    assert "learned log Z" in capsys.readouterr().out
