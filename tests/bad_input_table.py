"""The robustness table (issue 13), re-run through the real command lines: prints Markdown.

    python tests/bad_input_table.py > table.md      # as root; needs runs/default (make train)

Each row runs one bad command as a user would and records the exit status, the last line on
stderr (progress bars aside) and how many lines there were. Row 12 fills a real 150 KB tmpfs
(mount needs root); rows 2, 3, 11 and 13 write under /sys, read-only even for root. The same
cases, asserted, are tests/test_bad_inputs.py.
"""
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv/bin/python")
W = os.path.join(tempfile.mkdtemp(prefix="bitwrn-bad-inputs."), "w")
os.makedirs(W)
FM = ["--dataset", "fashion-mnist", "--subset", "500", "--depth", "8", "--epochs", "2", "--batch-size", "50", "--threads", "1"]
rows = []


def cli(mod, *args, label, timeout=600):
    cmd = [PY, "-m", mod, *map(str, args)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    err = [l for l in r.stderr.replace("\r", "\n").splitlines() if l.strip() and "%|" not in l]
    rows.append((label, "python -m " + mod + " " + " ".join(str(a).replace(W, "W") for a in args), r.returncode, err[-1].replace(W, "W") if err else "", len(err)))



open(f"{W}/file", "w").write("mine")
cli("training.train", *FM, "--out", f"{W}/file", label="1 train --out is a file")
cli("training.train", *FM, "--out", "/sys/kernel/run", label="2 --out under a read-only parent")
cli("training.train", *FM, "--out", "/sys/kernel", label="3 --out an existing read-only folder")
os.makedirs(f"{W}/other"); subprocess.run([PY, "-c", f"import torch; torch.save({{'w': torch.zeros(3)}}, '{W}/other/checkpoint.pt')"], check=True)
cli("training.train", *FM, "--out", f"{W}/other", "--resume", label="4 --resume on a torch file of another shape")
cli("training.train", *FM, "--out", f"{W}/r5", "--device", "tpu", label="5 --device tpu")
cli("training.train", *FM, "--out", f"{W}/r6", "--threads", "-1", label="6 --threads -1")
cli("training.train", *FM, "--out", f"{W}/r6", "--threads", "0", label="6 --threads 0")
cli("training.train", *FM, "--out", f"{W}/r7", "--cutout", "1000", label="7 --cutout 1000")
os.makedirs(f"{W}/done"); shutil.copy(f"{ROOT}/runs/default/bundle.npz", f"{W}/done/"); shutil.copy(f"{ROOT}/runs/default/summary.json", f"{W}/done/")
cli("training.train", *FM, "--out", f"{W}/done", label="8 run folder with bundle + summary, no checkpoint")


def tampered(name, edit):
    src = f"{ROOT}/runs/default/bundle.npz"
    os.makedirs(f"{W}/{name}")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(f"{W}/{name}/bundle.npz", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "manifest.npy":
                m = json.loads(np.load(io.BytesIO(data)).tobytes().decode())
                edit(m)
                buf = io.BytesIO(); np.lib.format.write_array(buf, np.frombuffer(json.dumps(m).encode(), np.uint8)); data = buf.getvalue()
            zout.writestr(info.filename, data)


tampered("vtrue", lambda m: m.update(version=True))
cli("quantize", f"{W}/vtrue", label="9 bundle version true")
tampered("vfloat", lambda m: m.update(version=1.0))
cli("quantize", f"{W}/vfloat", label="9 bundle version 1.0")
tampered("nanscale", lambda m: next(o for o in m["ops"] if o["op"] == "conv").update(scale=float("nan")))
cli("quantize", f"{W}/nanscale", label="10 bundle with a NaN scale")
tampered("negeps", lambda m: next(o for o in m["ops"] if o["op"] == "batchnorm").update(eps=-1e-5))
cli("quantize", f"{W}/negeps", label="10 bundle with a negative eps")
cli("quantize", f"{ROOT}/runs/default", "--out", f"{W}/file", label="11 quantize --out is a file")
cli("quantize", f"{ROOT}/runs/default", "--out", "/sys/kernel/q", label="11 quantize --out read-only")
os.makedirs(f"{W}/full")
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", f"{W}/full"], check=True)
try:
    os.makedirs(f"{W}/full/quant"); open(f"{W}/full/quant/report.json", "w").write("{\"old\": 1}")
    cli("quantize", f"{ROOT}/runs/default", "--test-images", "500", "--sweep-bits", "8", "--out", f"{W}/full/quant", label="12 quantize on a full disk (150 KB tmpfs)")
    rows[-1] = rows[-1][:3] + (rows[-1][3] + f" [after: {sorted(os.listdir(W + '/full/quant'))}, report.json {open(W + '/full/quant/report.json').read()!r}]",) + rows[-1][4:]
finally:
    subprocess.run(["umount", f"{W}/full"])
cli("hw.build", "--no-estimate", "--out", f"{W}/file", label="13 hw.build --out is a file")
cli("hw.build", "--no-estimate", "--out", "/sys/kernel/b", label="13 hw.build --out read-only")
subprocess.run([PY, "-c", f"from quantize.random_model import random_qmodel; from quantize.qmodel import write_qmodel; q = random_qmodel(depth=8, width=4, input_size=28, calib_images=4); write_qmodel('{W}/wide/qmodel.npz', q.manifest, q.tensors)"], cwd=ROOT, check=True)
t0 = time.time()
cli("hw.build", "--model", f"{W}/wide", "--out", f"{W}/wideb", label="14 hw.build of a WRN-8-4 (cannot fit)")
rows[-1] = rows[-1][:3] + (rows[-1][3] + f" [{time.time() - t0:.0f} s, --out exists: {os.path.exists(W + '/wideb')}]",) + rows[-1][4:]
# 15: a build killed during the estimate keeps the previous one
subprocess.run([PY, "-m", "hw.build", "--no-estimate", "--out", f"{W}/b15"], cwd=ROOT, check=True, capture_output=True)
before = sorted(os.listdir(f"{W}/b15"))
p = subprocess.Popen([PY, "-m", "hw.build", "--out", f"{W}/b15"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
time.sleep(25); p.send_signal(signal.SIGTERM); _, e = p.communicate()
err = [l for l in e.splitlines() if l.strip()]
rows.append(("15 hw.build killed (SIGTERM) during the estimate", "python -m hw.build --out W/b15 (then kill -TERM)", p.returncode, err[-1].replace(W, "W") + f" [files before {before == sorted(os.listdir(W + '/b15'))} equal after; yosys left: {'yowasp' in subprocess.run(['ps','-eo','args'],capture_output=True,text=True).stdout}]", len(err)))
print("| # | command | exit | stderr (last line) | lines |")
print("|---|---|---|---|---|")
for label, cmd, code, msg, n in rows:
    print(f"| {label} | `{cmd}` | {code} | {msg} | {n} |")
