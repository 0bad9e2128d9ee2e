"""Train a 1-bit-per-weight Wide ResNet and write a run directory with a deployment bundle.

    python -m training.train --dataset fashion-mnist --depth 20 --width 1 --weights 1bit \
        --variant bn --epochs 6 --out runs/default

Multi-GPU / multi-process: `torchrun --nproc_per_node N -m training.train ...` (each process
takes every N-th minibatch of a shared shuffled order, DistributedDataParallel averages the
gradients).

Run directory: checkpoint.pt (resumable), metrics.jsonl, summary.json, curves.png, bundle.npz.
"""
import hashlib
import io
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from common.cli import OneLineParser, UsageError, integer, number, path_arg, run_main
from common.files import (check_output_folder, folder_lock, write_bytes, write_json, write_text,
                          writing)
from training import lr_schedule, sgdr
from training.augment import augment
from training.bn_recalibration import recalibrate_batchnorm
from training.data import DATASETS, DatasetError, load_dataset
from training.distributed import init_distributed, shutdown
from training.export import export_bundle
from training.act_points import WIDTHS
from training.fake_quant import SCALE_MODES
from training.graph import VARIANTS, WEIGHT_MODES, check_depth, srelu_temperature_for
from training.model import WideResNet
from training.plots import plot_curves

PROG = "python -m training.train"
MOMENTUM = 0.9
BATCH_SIZE = 125
MAX_EPOCHS = 10_000
# More threads than 4 per CPU only contend (1024 where the count is unknown).
MAX_THREADS = 4 * (os.cpu_count() or 256)
WEIGHT_DECAY = 5e-4
EVAL_BATCH = 500
# Arguments that define a run: resuming with any of them changed would not continue the same run.
RUN_IDENTITY = ("dataset", "subset", "depth", "width", "weights", "variant", "epochs", "seed",
                "batch_size", "cutout", "srelu_temperature", "weight_decay", "lr_schedule",
                "lr_max", "warmup_steps", "clip_grad_norm", "act_bits", "residual_bits",
                "input_bits", "act_scales", "init_from")
# What a run given to --init-from must share with this one: the network's shape and its data.
INIT_IDENTITY = ("dataset", "depth", "width", "weights", "variant")
ACT_BITS = (2, 8)   # the activation widths --act-bits trains for (the accelerator carries them)
# The BN-free variant's defaults where the bn variant keeps the ICLR 2018 recipe (docs/results.md,
# "shifted ReLU": the published recipe alone collapses at this scale).
SRELU_DEFAULTS = dict(lr_schedule="cosine", warmup_steps=0, clip_grad_norm=1.0)
BN_DEFAULTS = dict(lr_schedule="sgdr", warmup_steps=0, clip_grad_norm=0.0)
# What runs from before these options existed used (their checkpoints lack the keys).
LEGACY_ARGS = dict(lr_schedule="sgdr", lr_max=0.1, warmup_steps=0, clip_grad_norm=0.0,
                   srelu_temperature=25.0, act_bits=None, residual_bits=None, input_bits=None,
                   act_scales="calibrated", init_from=None)


def build_parser():
    p = OneLineParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS)
    p.add_argument("--data-dir", type=path_arg, default=None, help="folder with the dataset's files")
    p.add_argument("--subset", default=None, metavar="N",
                   type=integer(1, 10**8, "an image count; the largest set here, SVHN, has 73,257"),
                   help="train on N random training images (and up to N test images)")
    p.add_argument("--depth", type=integer(8, 200, "5x the WRN papers' deepest, 40"), default=20,
                   help="6n+2 conv layers (8, 14, 20, 26, ...)")
    p.add_argument("--width", type=integer(1, 16, "the WRN paper's widest is 10"), default=1,
                   help="widening factor k (16k channels first)")
    p.add_argument("--weights", default="1bit", choices=WEIGHT_MODES)
    p.add_argument("--variant", default="bn", choices=VARIANTS,
                   help="bn: ICLR 2018; srelu: BN-free shifted ReLU (2019)")
    p.add_argument("--srelu-temperature", default=None,
                   type=number(0, 1e4, "it divides the logits; the defaults: 25..80", above=True),
                   help="head temperature T of --variant srelu (default: 40 for 1-bit, 80 for "
                        "float weights on 10 classes, 25 on 100; see training/graph.py)")
    p.add_argument("--epochs", type=integer(1, MAX_EPOCHS, "the papers train up to 254"), default=6,
                   help="with --lr-schedule sgdr one of " + ", ".join(map(str, sgdr.ALLOWED_EPOCHS)))
    p.add_argument("--lr-schedule", default=None, metavar="{sgdr,cosine}",
                   help="sgdr: warm restarts (ICLR 2018, the bn default); cosine: one decay "
                        "0.1 -> 1e-5 (the 2019 shifted-ReLU runs, the srelu default)")
    p.add_argument("--lr-max", type=number(0, 10, "the paper's peak is 0.1", above=True),
                   default=0.1, help="peak learning rate (the schedule is scaled to it)")
    p.add_argument("--warmup-steps", default=None, metavar="N",
                   type=integer(0, 10**7, "over 100 epochs of SVHN at batch size 1"),
                   help="linear learning-rate warm-up over the first N steps (0: none)")
    p.add_argument("--clip-grad-norm", default=None, metavar="NORM",
                   type=number(0, 1e6, "0: none; a norm of 1e6 clips nothing that trains"),
                   help="clip the gradient's global norm to NORM; 0: no clipping (default: 1 "
                        "for --variant srelu, which collapses without it; 0 for bn)")
    p.add_argument("--act-bits", type=int, default=None, metavar="B",
                   help=f"train for B-bit activations ({ACT_BITS[0]}..{ACT_BITS[1]}): round them "
                        "where the integer model stores them (default: float activations)")
    p.add_argument("--residual-bits", type=int, default=None, metavar="R",
                   help=f"with --act-bits: the residual stream's width ({WIDTHS[0]}..{WIDTHS[1]}, "
                        "default B); the convs read B-bit activations")
    p.add_argument("--input-bits", type=int, default=None, metavar="I",
                   help="with --act-bits: the width of the image as the first conv reads it, "
                        f"after the input BN ({WIDTHS[0]}..{WIDTHS[1]}, default B)")
    p.add_argument("--act-scales", default="calibrated", choices=SCALE_MODES,
                   help="with --act-bits: the power-of-two scales follow each tensor's running "
                        "peak (calibrated) or are trained parameters (learned)")
    p.add_argument("--init-from", type=path_arg, default=None, metavar="RUN",
                   help="start from the weights and BN moments of the finished or checkpointed "
                        "run in folder RUN (same dataset, depth, width, weights, variant), e.g. to "
                        "fine-tune it for --act-bits")
    # the images at hand may be smaller: checked once they are loaded
    p.add_argument("--cutout", type=integer(0, 2**32 - 1, "an idx file's largest image side"),
                   default=0, metavar="SIZE", help="cutout patch size (paper: 18)")
    p.add_argument("--batch-size", default=BATCH_SIZE, help="per process",
                   type=integer(1, 65536, "the largest published ImageNet batches are 64Ki"))
    p.add_argument("--weight-decay", type=number(0, 1, "the paper's is 5e-4"), default=WEIGHT_DECAY)
    p.add_argument("--seed", type=integer(0, 2**64 - 1, "torch.manual_seed takes 64 bits"),
                   default=0)
    p.add_argument("--out", type=path_arg, default="runs/default", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--stop-after", type=integer(1, MAX_EPOCHS, "as --epochs"), default=None,
                   metavar="EPOCHS",
                   help="stop (resumably) once this many epochs are done, e.g. for job time limits")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=integer(1, MAX_THREADS, "4 per CPU here"), default=None,
                   help="CPU threads per process")
    return p


def resolve_defaults(args):
    """Fill the options whose default depends on the variant."""
    defaults = SRELU_DEFAULTS if args.variant == "srelu" else BN_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def check_args(args):
    resolve_defaults(args)
    try:
        lr_schedule.check_schedule(args.lr_schedule, args.epochs)
        check_depth(args.depth)
    except ValueError as e:
        raise UsageError(str(e)) from None
    lo, hi = ACT_BITS
    if args.act_bits is not None and not lo <= args.act_bits <= hi:
        raise UsageError(f"--act-bits must be {lo}..{hi}, got {args.act_bits} (leave it out for "
                         "float activations)")
    for option, what in (("residual_bits", "residual stream"), ("input_bits", "image input")):
        value, flag = getattr(args, option), "--" + option.replace("_", "-")
        if value is None:
            continue
        if args.act_bits is None:
            raise UsageError(f"{flag} needs --act-bits (it is the width of the {what} of a model "
                             "trained for low-bit activations)")
        if not WIDTHS[0] <= value <= WIDTHS[1]:
            raise UsageError(f"{flag} must be {WIDTHS[0]}..{WIDTHS[1]}, got {value}")
    if args.init_from is not None:
        args.init_from = os.path.normpath(args.init_from)
        if args.init_from == os.path.normpath(args.out):
            raise UsageError(f"--init-from {args.init_from} is the --out folder: to continue "
                             "that run use --resume")
    check_output_folder(args.out, "--out")


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device here; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def to_input(images, device):
    """Raw uint8 pixels -> float 0..255: the learned input BN does the normalization."""
    return torch.from_numpy(images).to(device=device, dtype=torch.float32)


@torch.no_grad()
def evaluate(model, x, y, device):
    model.eval()
    wrong = 0
    for i in range(0, len(x), EVAL_BATCH):
        logits = model(to_input(x[i:i + EVAL_BATCH], device))
        wrong += (logits.argmax(1).cpu().numpy() != y[i:i + EVAL_BATCH]).sum()
    return float(wrong) / len(x)


def epoch_batches(args, data, epoch, dist, steps):
    """This process's augmented minibatches for one epoch, reproducible from (seed, epoch)."""
    order = np.random.default_rng([args.seed, epoch]).permutation(len(data.train_x))
    rng = np.random.default_rng([args.seed, epoch, dist.rank, 1])
    for step in range(steps):
        start = (step * dist.world + dist.rank) * args.batch_size
        idx = np.sort(order[start:start + args.batch_size])
        yield step, augment(data.train_x[idx], rng, data.flip, args.cutout), data.train_y[idx]


def make_optimizer(model, args):
    # Weight decay on conv weights only, as in the paper; the input BN's scale/offset are free.
    conv_params = [m.weight for _, m in model.convs()]
    conv_ids = {id(p) for p in conv_params}
    other = [p for p in model.parameters() if id(p) not in conv_ids]
    return torch.optim.SGD([dict(params=conv_params, weight_decay=args.weight_decay),
                            dict(params=other, weight_decay=0.0)],
                           lr=args.lr_max, momentum=MOMENTUM)


def load_checkpoint(args, path):
    if not os.path.exists(path):
        raise UsageError(f"--resume: no checkpoint at {path}; start the run without --resume")
    ckpt = read_checkpoint(path, "--resume", "delete it to start over")
    stored = {k: ckpt["args"].get(k, LEGACY_ARGS.get(k)) for k in RUN_IDENTITY}
    if args.srelu_temperature is None:       # not given: the run's own
        args.srelu_temperature = stored["srelu_temperature"]
    changed = [k for k in RUN_IDENTITY if stored[k] != getattr(args, k)]
    if changed:
        k = changed[0]
        raise UsageError(f"--resume: --{k.replace('_', '-')} was {stored[k]!r} in {path}, "
                         f"now {getattr(args, k)!r}; resume with the run's own arguments")
    return ckpt


def read_checkpoint(path, option, fix):
    """A checkpoint of this trainer at `path`, or one UsageError line naming `option` and `fix`."""
    try:    # weights_only: tensors and plain containers, never code from the file
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise UsageError(f"{option}: cannot read {path} ({type(e).__name__}); {fix}") from None
    if not (isinstance(ckpt, dict) and CHECKPOINT_KEYS <= set(ckpt) and isinstance(ckpt["args"], dict)):
        raise UsageError(f"{option}: {path} is not a checkpoint of this trainer (no "
                         f"{', '.join(sorted(CHECKPOINT_KEYS))}); {fix}")
    return ckpt


def load_init_weights(args):
    """The model state of the run in --init-from, once its arguments are checked to describe
    this run's network."""
    path = os.path.join(args.init_from, "checkpoint.pt")
    if not os.path.isfile(path):
        raise UsageError(f"--init-from {args.init_from}: no checkpoint.pt there; give the folder "
                         "of a run of python -m training.train")
    ckpt = read_checkpoint(path, "--init-from", "give the folder of another run")
    for k in INIT_IDENTITY:
        theirs = ckpt["args"].get(k)
        if theirs != getattr(args, k):
            raise UsageError(f"--init-from {args.init_from}: that run has --{k.replace('_', '-')} "
                             f"{theirs!r}, this one {getattr(args, k)!r}; start from a run of "
                             "the same network and dataset")
    return ckpt["model"]


def load_weights(model, state, source, fix, ignore=()):
    """Load checkpoint weights `state` into `model`, once its keys and tensor shapes are checked
    to be the model's (but for keys starting with `ignore`): those of another network would end in
    torch's multi-line "size mismatch" or "Missing key(s)"."""
    def shapes(tensors):
        return {k: tuple(v.shape) if torch.is_tensor(v) else "not a tensor"
                for k, v in tensors.items() if not k.startswith(ignore)}
    ours = shapes(model.state_dict())
    theirs = shapes(state) if isinstance(state, dict) else {}
    for k in [*ours, *(k for k in theirs if k not in ours)]:
        if ours.get(k) != theirs.get(k):
            raise UsageError(f"{source}: its weights do not fit this network ({k}: "
                             f"{theirs.get(k, 'absent')} there, {ours.get(k, 'absent')} here); "
                             f"{fix}")
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(ignore)},
                          strict=not ignore)


CHECKPOINT_KEYS = {"epoch", "model", "optimizer", "history", "args", "wall_s"}
# A run folder holds these; a new run (no --resume) must not write over any of them.
RUN_FILES = ("checkpoint.pt", "bundle.npz", "summary.json", "metrics.jsonl")


def save_checkpoint(path, model, optimizer, history, args, wall_s):
    state = dict(epoch=len(history), model=model.state_dict(), optimizer=optimizer.state_dict(),
                 history=history, args=vars(args), wall_s=wall_s)
    # into memory first: on a full disk torch's writer raises its own RuntimeError, write_bytes
    # an OSError, which `writing` turns into one line
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue())


def train(args):
    check_args(args)
    if int(os.environ.get("RANK", "0")) != 0:       # torchrun: rank 0 writes the run folder
        return train_locked(args)
    with folder_lock(args.out, "--out"):
        return train_locked(args)


def train_locked(args):
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")
    held = [f for f in RUN_FILES if os.path.exists(os.path.join(args.out, f))]
    if not args.resume and held:
        hint = "pass --resume to continue it, or " if "checkpoint.pt" in held else ""
        raise UsageError(f"{args.out} already holds a run ({', '.join(held)}): {hint}choose "
                         f"another --out")
    ckpt = load_checkpoint(args, ckpt_path) if args.resume else None
    init = load_init_weights(args) if args.init_from and not ckpt else None
    data = load_dataset(args.dataset, args.data_dir, args.subset, args.seed)
    if args.subset is not None and len(data.train_x) < args.subset:   # it took them all
        raise UsageError(f"--subset {args.subset}: {data.name} has {len(data.train_x)} training "
                         f"images; give --subset {len(data.train_x)} or fewer, or leave it out")
    size = min(data.train_x.shape[2:])
    if args.cutout > size:
        raise UsageError(f"--cutout {args.cutout} is larger than the {size}x{size} images and "
                         f"would blank them; use at most {size} (the paper: 18 on 32x32)")
    dist = init_distributed(device)
    if device.type == "cuda" and dist.active:
        device = torch.device("cuda", dist.rank % torch.cuda.device_count())
    steps = len(data.train_x) // (args.batch_size * dist.world)
    if steps == 0:
        raise UsageError(f"{len(data.train_x)} training images are fewer than one minibatch of "
                         f"{args.batch_size} x {dist.world} processes: use a larger --subset "
                         f"or a smaller --batch-size")

    torch.manual_seed(args.seed)
    c, h, w = data.train_x.shape[1:]
    if args.srelu_temperature is None:
        args.srelu_temperature = srelu_temperature_for(args.weights, data.num_classes)
    model = WideResNet(args.depth, args.width, c, data.num_classes, h, args.weights,
                       args.variant, args.srelu_temperature, args.act_bits, args.act_scales,
                       args.residual_bits, args.input_bits)
    if init is not None:    # its activation scales left out: they start from this run's data
        load_weights(model, init, f"--init-from {args.init_from}",
                     "start from a run of the same network and dataset", ignore=("act_quant.",))
    model = model.to(device)
    optimizer = make_optimizer(model, args)
    history, wall_before = [], 0.0
    if ckpt:
        load_weights(model, ckpt["model"], f"--resume: {ckpt_path}",
                     "it is another network's: resume with that run's arguments, or delete it "
                     "to start over")
        optimizer.load_state_dict(ckpt["optimizer"])
        history, wall_before = ckpt["history"], ckpt["wall_s"]
    net = DistributedDataParallel(model) if dist.active else model
    start = time.time()
    if dist.main:
        os.makedirs(args.out, exist_ok=True)
        acts = "float"
        if args.act_bits is not None:
            image = ("" if args.input_bits in (None, args.act_bits)
                     else f", image input {args.input_bits}-bit")
            acts = (f"{args.act_bits}-bit ({args.act_scales} scales, residual stream "
                    f"{args.residual_bits or args.act_bits}-bit{image})")
        init = f", initialized from {args.init_from}" if args.init_from else ""
        print(f"WRN-{args.depth}-{args.width} {args.weights}/{args.variant}, {acts} activations"
              f"{init}, on {args.dataset}: "
              f"{len(data.train_x)} train / {len(data.test_x)} test images, "
              f"{model.weight_count():,} conv weights, {dist.world} process(es) on {device}",
              flush=True)

    last_epoch = args.epochs if args.stop_after is None else min(args.epochs, args.stop_after)
    for epoch in range(len(history), last_epoch):
        net.train()
        wrong = seen = loss_sum = 0.0
        t0 = time.time()
        bar = tqdm(epoch_batches(args, data, epoch, dist, steps), total=steps, disable=not dist.main,
                   desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, file=sys.stderr)
        for step, images, labels in bar:
            lr = lr_schedule.learning_rate(args.lr_schedule, epoch + step / steps, args.epochs,
                                           args.lr_max,
                                           epoch * steps + step, args.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = to_input(images, device), torch.from_numpy(labels).to(device)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            optimizer.step()
            wrong += (logits.argmax(1) != y).sum().item()
            seen += len(y)
            loss_sum += loss.item() * len(y)
        wrong, seen, loss_sum = dist.sum([wrong, seen, loss_sum])
        test_error = evaluate(model, data.test_x, data.test_y, device) if dist.main else float("nan")
        history.append(dict(epoch=epoch + 1, train_error=wrong / seen, train_loss=loss_sum / seen,
                            test_error=test_error, lr_end=lr,
                            epoch_s=time.time() - t0))
        if dist.main:
            wall = wall_before + time.time() - start
            with writing(f"epoch {epoch + 1}'s checkpoint and metrics in {args.out}",
                         "the previous checkpoint is intact: free space, then --resume"):
                save_checkpoint(ckpt_path, model, optimizer, history, args, wall)
                write_text(os.path.join(args.out, "metrics.jsonl"),
                           "".join(json.dumps(h) + "\n" for h in history))
            print(f"epoch {epoch + 1}/{args.epochs}: train error {wrong / seen:.4f}, "
                  f"test error {test_error:.4f}, {time.time() - t0:.0f} s", flush=True)
        dist.barrier()

    if len(history) < args.epochs:
        if dist.main:
            print(f"stopped after {len(history)} of {args.epochs} epochs: continue with --resume",
                  flush=True)
        shutdown(dist)
        return None

    check_in_sync(model, dist)
    with writing(f"the run's final files in {args.out}",     # each one is written atomically
                 "the checkpoint of the last epoch is intact: free space, then --resume"):
        summary = finish(args, model, data, dist, device, steps, history)
        if dist.main:
            summary["wall_s"] = wall_before + time.time() - start
            write_json(os.path.join(args.out, "summary.json"), summary)
            plot_curves(history, os.path.join(args.out, "curves.png"),
                        f"WRN-{args.depth}-{args.width} {args.weights}/{args.variant}, {args.dataset}")
    if dist.main:
        print(f"test error {summary['test_error']:.4f} "
              f"({summary['test_error_before_bn_recalibration']:.4f} before BN recalibration); "
              f"run in {args.out}", flush=True)
    shutdown(dist)
    return summary


def check_in_sync(model, dist):
    """DDP must leave every process with identical weights; fail loudly if it did not."""
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(p.detach().cpu().numpy().tobytes())
    if not dist.all_equal(digest.hexdigest()):
        raise RuntimeError("distributed processes ended with different weights")
    if dist.active and dist.main:
        print(f"{dist.world} processes hold identical weights", flush=True)


def finish(args, model, data, dist, device, steps, history):
    """Recompute BN moments, measure the test error before and after, export the bundle."""
    before = history[-1]["test_error"]
    batches = (to_input(images, device)
               for _, images, _ in tqdm(epoch_batches(args, data, args.epochs, dist, steps),
                                        total=steps, disable=not dist.main, leave=False,
                                        desc="BN recalibration", file=sys.stderr))
    used = recalibrate_batchnorm(model, batches, dist) if model.batchnorms() else 0
    if not dist.main:
        return None
    after = evaluate(model, data.test_x, data.test_y, device)
    summary = dict(
        test_error=after, test_error_before_bn_recalibration=before,
        train_error=history[-1]["train_error"], epochs=args.epochs, params=model.weight_count(),
        weight_bits=model.weight_count() * (1 if args.weights == "1bit" else 32),
        bn_recalibration_batches=used * dist.world, processes=dist.world,
        dataset=args.dataset, train_images=len(data.train_x), test_images=len(data.test_x),
        model=model.config, seed=args.seed, cutout=args.cutout, act_bits=args.act_bits,
        residual_bits=args.residual_bits or args.act_bits,
        input_bits=args.input_bits or args.act_bits,
        act_scales=args.act_scales if args.act_bits else None, init_from=args.init_from,
        mean_epoch_s=float(np.mean([h["epoch_s"] for h in history])),
    )
    export_bundle(model.cpu(), os.path.join(args.out, "bundle.npz"),
                  dict(dataset=args.dataset, epochs=args.epochs, test_error=after, seed=args.seed,
                       init_from=args.init_from))
    return summary


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: train(args), errors=(DatasetError,),
                    interrupted="the checkpoint of the last finished epoch is kept: continue "
                                "with --resume")


if __name__ == "__main__":
    sys.exit(main())
