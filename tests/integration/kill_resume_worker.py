"""A meta-training run for the kill-and-resume test (a separate process).

    python kill_resume_worker.py DATA_DIR SAVE_DIR OUT_FILE

FOMAML with a learned rule (Meta-SGD rates and their Adam optimiser) on the
tiny CRDNN with dropout on, the outer Adam under a Noam learning-rate
schedule, meta-batches of 2 tasks, an intra-epoch checkpoint at every
meta-batch boundary (AtomicCheckpointer), 2 epochs of 8 episodes. It prints ``episode`` before each episode and
``saving`` while a checkpoint is being written (slowed down, so the test
can kill it there), resumes from SAVE_DIR if it holds a checkpoint, and at
the end writes the final state to OUT_FILE.
"""

import sys
import time

import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from test_meta_brain import episodes
from tiny_asr import TinyASR, load_model_hparams, make_datasets

from speechbrain_meta import (
    FOMAML,
    InnerLoop,
    MetaOptimizerBrain,
    MetaSGD,
    meta_brain_class,
)
from speechbrain_meta.checkpoints import AtomicCheckpointer

CORPUS = dict(
    n_train_tasks=6, n_dev_tasks=2, n_test_tasks=2, utts_per_task=12, seed=7
)


@register_checkpoint_hooks
class SlowSave:
    """Announces a save, and takes its time (a window to kill it in)."""

    @mark_as_saver
    def save(self, path):
        print("saving", flush=True)
        time.sleep(0.3)
        with open(path, "w") as f:
            f.write("done")

    @mark_as_loader
    def load(self, path, end_of_epoch):
        del path, end_of_epoch


class Worker(meta_brain_class(TinyASR, MetaOptimizerBrain)):
    def on_fit_batch_start(self, batch, should_step):
        print("episode", flush=True)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step:  # the schedule advances once per outer step
            self.hparams.scheduler(self.optimizer)


def main(data_dir, save_dir, out_file):
    data = make_datasets(data_dir, **CORPUS)
    torch.manual_seed(0)
    hparams = load_model_hparams(
        "crdnn",
        extra="\nckpt_interval_steps: 1\ngrad_accumulation_factor: 2\n",
    )
    # Dropout on: the random generators must resume too.
    for module in hparams["modules"]["encoder"].modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.3
    epochs = sb.utils.epoch_loop.EpochCounter(2)
    scheduler = sb.nnet.schedulers.NoamScheduler(
        lr_initial=1e-3, n_warmup_steps=3
    )
    hparams["scheduler"] = scheduler
    checkpointer = AtomicCheckpointer(
        save_dir,
        {
            **hparams["modules"],
            "counter": epochs,
            "scheduler": scheduler,
            "slow": SlowSave(),
        },
    )
    brain = Worker(
        modules=hparams["modules"],
        opt_class=lambda p: torch.optim.Adam(p, lr=1e-3),
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True},
        checkpointer=checkpointer,
        meta_algorithm=FOMAML(
            InnerLoop(inner_steps=2, update_rule=MetaSGD(init_lr=0.1))
        ),
        rule_opt_class=lambda p: torch.optim.Adam(p, lr=1e-2),
    )
    brain.fit(epochs, data["train"], train_loader_kwargs=episodes(per_epoch=8))
    torch.save(
        {
            "modules": brain.modules.state_dict(),
            "optimizer": brain.optimizer.state_dict(),
            "rule": brain.meta_algorithm.state_dict(),
            "rule_optimizer": brain.rule_optimizer.state_dict(),
            "lr": brain.optimizer.param_groups[0]["lr"],
            "scheduler_steps": scheduler.n_steps,
            "steps": brain.optimizer_step,
            "rng": torch.get_rng_state(),
        },
        out_file,
    )
    print("finished", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
