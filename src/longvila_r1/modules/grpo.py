"""Stage 2 of the recipe: GRPO on long videos, with every video encoded once per step."""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from longvila_r1.algorithms import (
    ADVANTAGE_MODES,
    KL_ESTIMATORS,
    GroupBuffer,
    aggregate_loss,
    group_advantages,
    kl_penalty,
    masked_mean,
)
from longvila_r1.algorithms import policy_loss as clipped_policy_loss
from longvila_r1.data.collate import select_videos
from longvila_r1.data.processing import processor_config_for
from longvila_r1.models import VideoEmbeddings, VideoLMPolicy
from longvila_r1.models.generation import GenerationOutput
from longvila_r1.models.logprobs import score_mask
from longvila_r1.modules.grpo_batch import (
    RolloutBatch,
    group_rows,
    merge_rollouts,
    reward_inputs,
    select_groups,
    split_groups,
)
from longvila_r1.modules.policy_module import VideoPolicyModule
from longvila_r1.parallel import use_ulysses_attention
from longvila_r1.rewards import AccuracyReward, FormatReward, Reward, RewardSet
from longvila_r1.rollout import (
    RolloutEngine,
    SamplingParams,
    TransformersEngine,
    VideoEmbeddingCache,
    cache_key,
    vision_fingerprint,
)


class GRPOModule(VideoPolicyModule):
    """Group Relative Policy Optimisation for video QA, one numbered step per phase of the paper's loop.

    Per batch of ``B`` prompts: (1) encode each video once (cached across steps when the vision tower is
    frozen), (2) sample ``G`` responses per prompt from the cached embeddings, (3) score them, (4) group-relative
    advantages, (5) old-policy and reference log-probs with the same embeddings, (6) ``ppo_epochs`` passes of
    clipped-ratio updates over mini-batches of whole groups, with a KL penalty to the frozen reference.
    Optimisation is manual (several optimizer steps per batch); ``trainer.max_steps`` counts optimizer steps.

    The rollout engine and the embedding cache are attached by
    :class:`~longvila_r1.callbacks.RolloutCallback`, which owns their lifecycle; without the callback the
    module sets up a :class:`~longvila_r1.rollout.TransformersEngine` and an in-memory cache itself.

    Args:
        rollout_engine: the engine that samples (YAML ``class_path``); default the transformers engine.
        rewards: reward functions (YAML ``class_path`` list); default accuracy (1.0) + format (0.1).
        reward_on_error: a reward that raises: ``"raise"`` (error names reward and sample) or ``"zero"``
            (the sample gets 0 for it, counted in ``rollout/reward_errors``).
        group_size: samples per prompt ``G``.
        max_new_tokens / temperature / top_p: sampling settings of the rollouts; old-policy, reference and
            training log-probs are taken at the same temperature, so the ratio and KL are the sampler's.
        advantage_mode: ``"grpo"``, ``"dr_grpo"`` or ``"rloo"``.
        kl_coef / kl_estimator: weight and estimator (``"k1"``, ``"k2"``, ``"k3"``) of the KL to the reference.
        clip_low / clip_high / dual_clip / loss_agg: the clipped surrogate (see ``algorithms.policy_loss``).
        ppo_epochs: passes over each batch of rollouts. With 1 and ``mini_batch_prompts=None`` (the default) each
            rollout feeds one optimizer step, so the old-policy log-probs are the update's own and their
            separate pass is skipped (:attr:`single_update`).
        mini_batch_prompts: prompts (whole groups) per optimizer step; ``None`` = all ``B``.
        max_grad_norm: gradient clipping (manual optimisation does not use ``trainer.gradient_clip_val``).
        dynamic_sampling: drop groups whose rewards are all equal (DAPO) and refill from the next batches until
            ``B`` informative groups are collected or ``max_sampling_rounds`` batches were drawn; the update then
            runs on what was collected (``rollout/kept_groups``, ``rollout/sampling_rounds`` are logged). With
            several data-parallel ranks, all wait for the slowest and update on the fewest groups any rank has;
            an update with no informative group is skipped (``rollout/skipped_updates``, warned once).
        max_sampling_rounds: bound on the batches drawn for one update under dynamic sampling.
        reference_on_cpu: keep the frozen reference on the CPU between its passes (saves accelerator memory).
        rollout_seed: base seed of the sampling; step ``s`` samples with ``rollout_seed + s`` (exact resume).
            ``None`` (the default) takes the run's ``seed_everything`` under the CLI, 0 elsewhere.

    Example:
        ``longvila-r1 fit --config configs/grpo.yaml --model.init_args.path outputs/sft/hf``
    """

    def __init__(
        self,
        *args: Any,
        rollout_engine: RolloutEngine | None = None,
        rewards: list[Reward] | None = None,
        reward_on_error: Literal["raise", "zero"] = "raise",
        group_size: int = 8,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        advantage_mode: str = "grpo",
        kl_coef: float = 0.01,
        kl_estimator: str = "k3",
        clip_low: float = 0.2,
        clip_high: float = 0.28,
        dual_clip: float | None = None,
        loss_agg: str = "token-mean",
        ppo_epochs: int = 1,
        mini_batch_prompts: int | None = None,
        max_grad_norm: float | None = 1.0,
        dynamic_sampling: bool = False,
        max_sampling_rounds: int = 3,
        reference_on_cpu: bool = False,
        rollout_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        _check_choice("advantage_mode", advantage_mode, ADVANTAGE_MODES)
        _check_choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
        if group_size < 2:
            raise ValueError(f"group_size must be >= 2 (advantages compare samples of a group), got {group_size}")
        if ppo_epochs < 1 or (mini_batch_prompts is not None and mini_batch_prompts < 1):
            raise ValueError(f"ppo_epochs and mini_batch_prompts must be >= 1, got {ppo_epochs}, {mini_batch_prompts}")
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        self.save_hyperparameters(ignore=["rollout_engine", "rewards", "optimizer", "lr_scheduler"])
        self.automatic_optimization = False
        self.sampling = SamplingParams(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=group_size
        )
        self.reward_set = RewardSet(rewards or [AccuracyReward(), FormatReward(weight=0.1)], on_error=reward_on_error)
        self.rollout_engine: RolloutEngine = rollout_engine or TransformersEngine()
        self.embedding_cache: VideoEmbeddingCache | None = None
        self.processor = processor_config_for(self.hparams.path, self.policy.family)
        self._vision_fingerprint = ""
        self._vision_updates = 0  # optimizer steps that changed the vision weights
        self._reference: list[VideoLMPolicy] = []  # a list keeps it out of state_dict and .parameters()
        self.last_samples: list[dict[str, Any]] = []  # a few responses of the last step, for sample logging
        self.group_buffer: GroupBuffer | None = None  # dynamic sampling: informative groups awaiting an update
        self._skipped_updates = 0  # dynamic sampling: updates without any informative group

    # ------------------------------------------------------------------ lifecycle
    @override
    def setup(self, stage: str) -> None:
        if stage == "fit" and not self._reference:
            # Copied before any checkpoint is restored: the reference is the starting policy (the SFT model).
            reference = copy.deepcopy(self.policy).eval().requires_grad_(False)
            self._reference.append(reference)

    @override
    def on_fit_start(self) -> None:
        # Lightning warns that a checkpoint taken under manual optimisation holds the weights after the optimizer
        # step. For GRPO that is the state to resume from: the checkpoint's global_step counts that step, and a
        # resumed run goes on from the next batch with the weights of an uninterrupted one (test_grpo.py's
        # resume test). Set here, not at import, so that it holds inside a caller's warnings.catch_warnings.
        warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
        self._reference[0].to("cpu" if self.hparams.reference_on_cpu else self.device)
        if not self.rollout_engine.is_setup:  # no RolloutCallback: run with the defaults
            self.rollout_engine.setup(self.policy)
        if self.embedding_cache is None:
            self.embedding_cache = VideoEmbeddingCache()
        if self.sp_group is not None:  # the frozen reference runs its prefill sequence-parallel too
            use_ulysses_attention(self._reference[0].model)
        # Identifies the vision weights in cache keys, so a disk cache from other weights is never reused.
        self._vision_fingerprint = vision_fingerprint(self.policy)

    @property
    def vision_version(self) -> str:
        """Version of the vision weights: their fingerprint at fit start and the updates since."""
        return f"{self._vision_fingerprint}:{self._vision_updates}"

    @property
    def vision_trains(self) -> bool:
        return any(p.requires_grad for p in self.policy.vision_parameters())

    # ------------------------------------------------------------------ the step
    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        # Ranks update on as many prompts, so their optimizer steps (one per mini-batch) pair up: with samples
        # skipped under on_error=skip, all use the fewest any rank has, and a batch left empty skips the step.
        fewest = self.min_over_ranks(batch["size"])[0]
        if fewest == 0:
            return
        with self._timed("encode"):
            embeddings = self.prompt_embeddings(batch)  # 1. one encoding per video
        with self._timed("generate"):
            rollout = self.rollout(batch, embeddings)  # 2. G samples per prompt from the cached embeddings
        scores = self.score(rollout)  # 3. rewards
        if self.hparams.dynamic_sampling:  # DAPO: only groups whose rewards differ carry a learning signal
            collected = self.collect_informative_groups(rollout, scores.total, batch["size"])
            if collected is None:
                return  # refill from the next batch before updating
            rollout, total = collected
        else:
            rollout, total = self.first_groups(rollout, scores.total, fewest)
        advantages = group_advantages(total, self.hparams.group_size, self.hparams.advantage_mode)  # 4.
        with self._timed("logprob"):
            old_logp, ref_logp = self.reference_logprobs(rollout, old=not self.single_update)  # 5. no re-encoding
        with self._timed("update"):
            self.update(rollout, advantages, old_logp, ref_logp)  # 6. clipped-ratio updates

    def prompt_embeddings(self, batch: dict[str, Any]) -> VideoEmbeddings:
        """Embeddings of the batch's videos, from the cache where possible; detached (rollout and old/ref)."""
        with torch.no_grad():
            if self.vision_trains:  # weights change every step: encode once for this step only
                return self.encode_batch_videos(batch).detach()
            version = self.vision_version
            keys = [
                cache_key(path, frames, self.processor, version)
                for path, frames in zip(batch["video_paths"], batch["frame_indices"], strict=True)
            ]

            def encode(positions: list[int]) -> list[VideoEmbeddings]:
                return self.encode_batch_videos(select_videos(batch, positions)).to("cpu").split_per_video()

            found = self.embedding_cache.get_or_compute(keys, encode)
            self.log("cache/hit_rate", self.embedding_cache.stats()["hit_rate"], batch_size=batch["size"])
            return VideoEmbeddings.concat(found).to(self.device)

    def rollout(self, batch: dict[str, Any], embeddings: VideoEmbeddings) -> RolloutBatch:
        # All ranks of an sp group must sample the same responses; data-parallel ranks sample independently.
        seed = (self.hparams.rollout_seed or 0) + self.global_step + 1_000_003 * self.dp_rank
        params = dataclasses.replace(self.sampling, seed=seed)
        engine = self.rollout_engine
        engine.wake_up()  # the engine sleeps outside rollouts, so training has its memory (vLLM on GPU)
        out: GenerationOutput = engine.generate(
            batch["input_ids"], batch["attention_mask"], batch["mm_token_type_ids"], embeddings, params
        )
        engine.sleep()
        texts = self.tokenizer.batch_decode(out.response_ids * out.response_mask, skip_special_tokens=True)
        return RolloutBatch.from_generation(out, texts, batch, self.hparams.group_size)

    def score(self, rollout: RolloutBatch):
        scores = self.reward_set(reward_inputs(rollout))
        size = len(rollout.texts)
        self.last_samples = [
            {"id": rollout.ids[i], "answer": rollout.answers[i], "reward": float(scores.total[i]), "response": text}
            for i, text in enumerate(rollout.texts[: self.hparams.group_size])
        ]
        self.log("rollout/reward", scores.total.mean(), prog_bar=True, batch_size=size)
        for name, values in scores.values.items():
            self.log(f"rollout/reward/{name}", values.mean(), batch_size=size)
        if "accuracy" in scores.values:
            self.log("rollout/accuracy", scores.values["accuracy"].mean(), batch_size=size)
        self.log("rollout/response_len", rollout.output.response_lengths.float().mean(), batch_size=size)
        self.log("rollout/reward_errors", float(sum(scores.failures.values())), batch_size=size)
        return scores

    def collect_informative_groups(
        self, rollout: RolloutBatch, total: torch.Tensor, num_prompts: int
    ) -> tuple[RolloutBatch, torch.Tensor] | None:
        """Add this batch's informative groups to the buffer; the merged groups once it is full, else ``None``."""
        group = self.hparams.group_size
        if self.group_buffer is None:
            self.group_buffer = GroupBuffer(group, num_prompts, self.hparams.max_sampling_rounds)
        buffer = self.group_buffer
        # The target is the full batch: a first batch that lost samples to on_error=skip must not shrink it for good.
        buffer.target_groups = max(buffer.target_groups, num_prompts)
        buffer.add(total.detach().cpu(), split_groups(rollout, group))
        # Ranks update together (their gradients are reduced together) and on as many groups, so the mini-batch
        # counts match: every rank waits until all are done, then all take the fewest groups any rank has.
        all_done, fewest = self.min_over_ranks(int(buffer.done), min(len(buffer), buffer.target_groups))
        if not all_done:
            return None
        taken = buffer.take(limit=fewest)
        self.log("rollout/kept_groups", float(taken.kept_groups), batch_size=num_prompts)
        self.log("rollout/sampling_rounds", float(taken.rounds), batch_size=num_prompts)
        if taken.kept_groups == 0:
            self._skipped_updates += 1
            if self._skipped_updates == 1:
                rank_zero_warn(
                    f"dynamic sampling found no group whose rewards differ in {taken.rounds} batch(es) (on some "
                    "rank); the update is skipped. If this repeats (`rollout/skipped_updates`), training makes no "
                    "progress: check the rewards, or raise max_sampling_rounds or the temperature"
                )
            self.log("rollout/skipped_updates", float(self._skipped_updates), batch_size=num_prompts)
            return None
        return merge_rollouts(taken.payloads, self.tokenizer.pad_token_id), taken.rewards.to(total.device)

    def first_groups(self, rollout: RolloutBatch, total: torch.Tensor, count: int) -> tuple[RolloutBatch, torch.Tensor]:
        """The rollout and rewards of the first ``count`` prompts (all of them when it has no more)."""
        if rollout.num_prompts <= count:
            return rollout, total
        group = self.hparams.group_size
        return select_groups(rollout, range(count), group), total[: count * group]

    @property
    def logprob_temperature(self) -> float:
        """Temperature of every log-prob pass: the sampling one, so the ratio and KL are those of the sampler."""
        return 1.0 if self.sampling.is_greedy else self.sampling.temperature

    @property
    def single_update(self) -> bool:
        """Whether each rollout feeds exactly one optimizer step (one PPO epoch, one mini-batch of all prompts).

        Then the old policy is the policy being updated: its log-probs are the update's own, detached (the ratio
        is 1 and only its gradient matters), so the separate old-policy pass is skipped.
        """
        return self.hparams.ppo_epochs == 1 and self.hparams.mini_batch_prompts is None

    @torch.no_grad()
    def reference_logprobs(self, rollout: RolloutBatch, old: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Old-policy (``None`` without ``old``) and reference log-probs of the sampled tokens, ``[B*G, S-1]``."""
        out = rollout.output
        inputs = (out.sequences, out.attention_mask, out.mm_token_type_ids)
        scoring = {"prompt_lengths": out.prompt_length, "temperature": self.logprob_temperature}
        old_logp = self.response_logprobs(self.policy, *inputs, out.video_embeddings, **scoring) if old else None
        reference = self._reference[0]
        with _on_device(reference, self.device, offload=self.hparams.reference_on_cpu):
            ref = self.response_logprobs(reference, *inputs, out.video_embeddings, **scoring)
        return old_logp, ref

    def update(self, rollout: RolloutBatch, advantages, old_logp, ref_logp) -> None:
        """``ppo_epochs`` passes of clipped-ratio updates, one optimizer step per mini-batch of groups."""
        out, group = rollout.output, self.hparams.group_size
        mask = score_mask(out.sequences, out.attention_mask, prompt_lengths=out.prompt_length)  # [B*G, S-1]
        num_prompts = rollout.num_prompts
        per_step = self.hparams.mini_batch_prompts or num_prompts
        for _ in range(self.hparams.ppo_epochs):
            for start in range(0, num_prompts, per_step):
                prompts = list(range(start, min(start + per_step, num_prompts)))
                rows = torch.tensor(group_rows(prompts, group))
                embeddings = self.training_embeddings(rollout, prompts, rows)
                self.optimizer_step_on(out, rows, embeddings, advantages, old_logp, ref_logp, mask)

    def training_embeddings(self, rollout: RolloutBatch, prompts: list[int], rows: torch.Tensor):
        """Embeddings for the training forward: re-encoded with gradients once per prompt if the vision trains."""
        if not self.vision_trains:
            return rollout.output.video_embeddings.select(rows.tolist())
        # Gradients flow back through the vision tower; the G samples of a prompt share one encoding.
        fresh = self.encode_batch_videos(select_videos(rollout.videos, prompts))
        tokens_per_prompt = [int(t) for t in fresh.token_counts]
        return fresh.repeat_rows(tokens_per_prompt, self.hparams.group_size)

    def optimizer_step_on(self, out, rows, embeddings, advantages, old_logp, ref_logp, mask) -> None:
        hp = self.hparams
        logp, entropy = self.response_logprobs(
            self.policy,
            out.sequences[rows],
            out.attention_mask[rows],
            out.mm_token_type_ids[rows],
            embeddings,
            prompt_lengths=out.prompt_length,
            temperature=self.logprob_temperature,
            return_entropy=True,
        )  # [R, S-1]
        row_mask = mask[rows]
        # No old log-probs: a single update per rollout, whose policy is the old one (ratio 1, same gradient).
        pg_loss, stats = clipped_policy_loss(
            logp,
            logp.detach() if old_logp is None else old_logp[rows],
            advantages[rows],
            row_mask,
            clip_low=hp.clip_low,
            clip_high=hp.clip_high,
            agg=hp.loss_agg,
            dual_clip=hp.dual_clip,
            max_response_length=hp.max_new_tokens,
        )
        # The KL term is reduced like the policy loss, so both weigh tokens the same way.
        kl_tokens = kl_penalty(logp, ref_logp[rows], hp.kl_estimator)  # [R, S-1]
        kl = aggregate_loss(kl_tokens, row_mask, hp.loss_agg, max_response_length=hp.max_new_tokens)
        loss = pg_loss + hp.kl_coef * kl
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        if hp.max_grad_norm is not None:
            self.clip_gradients(optimizer, gradient_clip_val=hp.max_grad_norm, gradient_clip_algorithm="norm")
        optimizer.step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        if self.vision_trains:
            self._vision_updates += 1
        size = int(rows.numel())
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=size)
        self.log("train/kl", kl.detach(), batch_size=size)
        self.log("train/clipfrac", stats["clipfrac"], batch_size=size)
        self.log("train/entropy", masked_mean(entropy.detach(), row_mask), batch_size=size)

    # ------------------------------------------------------------------ bookkeeping
    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.log(f"timing/{phase}_s", time.perf_counter() - start, batch_size=1)

    @override
    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.embedding_cache is not None:
            rank_zero_info(f"video-embedding cache: {self.embedding_cache.stats()}")


def _check_choice(name: str, value: str, options) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")


@contextmanager
def _on_device(module: torch.nn.Module, device: torch.device, offload: bool) -> Iterator[None]:
    """Run ``module`` on ``device``; with ``offload``, move it back to the CPU afterwards."""
    module.to(device)
    try:
        yield
    finally:
        if offload:
            module.to("cpu")
