"""curves.png: train/test error and learning rate per epoch, for people rather than tools."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.files import atomic_path  # noqa: E402


def plot_curves(history, path, title):
    epochs = [h["epoch"] for h in history]
    fig, (ax_err, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True,
                                        gridspec_kw=dict(height_ratios=[3, 1]))
    ax_err.plot(epochs, [100 * h["train_error"] for h in history], "o-", label="train (augmented)")
    ax_err.plot(epochs, [100 * h["test_error"] for h in history], "s-", label="test")
    ax_err.set_ylabel("error (%)")
    ax_err.set_yscale("log")
    ax_err.grid(True, which="both", alpha=0.3)
    ax_err.legend()
    ax_err.set_title(title)
    ax_lr.plot(epochs, [h["lr_end"] for h in history], "k.-")
    ax_lr.set_yscale("log")
    ax_lr.set_ylabel("lr at epoch end")
    ax_lr.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
