"""Data-parallel training: `torchrun --nproc_per_node 2` (gloo, CPU) equals one process with the same
global batch, and both ranks end with identical weights."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import one_thread
from safetensors.torch import load_file

from vid2vid.config import load_config
from vid2vid.models.build import build_discriminator, build_generator
from vid2vid.train import train

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"

LAUNCHED = textwrap.dedent('''
    import os, sys
    import torch
    from safetensors.torch import save_file
    from vid2vid.config import load_config
    from vid2vid.train import train

    torch.set_num_threads(1)
    result = train(load_config(sys.argv[1], sys.argv[3:]))
    state = {**{"G." + k: v for k, v in result.generator.state_dict().items()},
             **{"D." + k: v for k, v in result.discriminator.state_dict().items()}}
    out = os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.safetensors")
    save_file({k: v.contiguous() for k, v in state.items()}, out)
''')


def test_two_processes_match_one(tmp_path):
    data = tmp_path / "data"
    # instance norm (tiny.yaml), no dropout, seeded per-sample augmentation (flip), least-squares GAN
    common = [f"data.root={data}", "data.flip=true", "train.max_steps=3", "train.checkpoint_every=3",
              "train.sample_every=1000", "optim.decay_start=0.5"]
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(TINY), str(tmp_path), f"train.out_dir={tmp_path / 'ddp'}", "data.batch_size=1", *common]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k

    from test_train import assert_close, outputs, read_log

    # Equal by construction: 1 process x batch 1 with grad_accum 2 on 1 thread (each process's gradient halved and
    # added, as the all-reduce does): every logged loss and the final networks, to rounding.
    with one_thread():
        accum = train(load_config(TINY, [f"train.out_dir={tmp_path / 'accum'}", "data.batch_size=1",
                                         "optim.grad_accum=2", *common]))
        cfg = load_config(TINY, [f"train.out_dir={tmp_path / 'one'}", "data.batch_size=2", *common])
        single = train(cfg)
    G, D = build_generator(cfg), build_discriminator(cfg)
    G.load_state_dict({k[2:]: v for k, v in rank0.items() if k.startswith("G.")})
    D.load_state_dict({k[2:]: v for k, v in rank0.items() if k.startswith("D.")})
    ddp_log, accum_log, one_log = (read_log(tmp_path / d) for d in ("ddp", "accum", "one"))
    assert [r["step"] for r in ddp_log] == [1, 2, 3]  # one log, written by rank 0 only
    keys = ("D/real", "D/fake", "G/gan", "G/feat", "lr/G")
    for a, b in zip(ddp_log, accum_log, strict=True):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-6), (a["step"], key)
    assert_close(outputs(G, D, cfg), outputs(accum.generator, accum.discriminator, cfg), atol=1e-5)
    # Against batch 2 (the same global batch, blocked differently by the CPU's kernels): the losses to 1e-4
    # (measured: 2.3e-7 on an Intel Xeon with AMX; the accumulated run: 0), the final networks up to what Adam
    # makes of summation-order noise (~0.1 in some weights; outputs 2e-3).
    for a, b in zip(ddp_log, one_log, strict=True):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)
    assert_close(outputs(G, D, cfg), outputs(single.generator, single.discriminator, cfg), atol=2e-3)
    assert (tmp_path / "ddp" / "export" / "generator.safetensors").is_file()
