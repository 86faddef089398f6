"""Typed sections of a recipe. Each field carries `help` metadata; `docs/recipes.md` lists them all.

Only rlft's own choices live here. Trainer settings are *not* re-declared: the recipe's `trainer:` mapping is
handed to TRL's config class for the chosen algorithm (GRPOConfig, DPOConfig, KTOConfig, ...), so every TRL
option stays reachable and is validated against TRL's own fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rlft.scoring.loader import RewardSpec
from rlft.trainers import TRAINER_MODULES

DEFAULT_MODEL = "smollm2-135m-instruct"
ALGORITHMS = tuple(TRAINER_MODULES)


def _f(default: Any = None, help: str = "", factory: Any = None) -> Any:  # noqa: A002 - mirrors dataclass naming
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    name: str = _f(DEFAULT_MODEL, "Embedded model name, Hugging Face id, local directory, or path to a .gguf file.")
    gguf_file: str | None = _f(None, "GGUF file name inside `name` (a directory or hub repo), if loading GGUF.")
    revision: str | None = _f(None, "Hub revision (branch, tag or commit) for hub ids.")
    dtype: str = _f("auto", "auto | float32 | bfloat16 | float16. auto: bf16 on CUDA that supports it, else fp32.")
    device: str = _f("auto", "auto | cpu | cuda. auto: CUDA when available, else CPU.")
    trust_remote_code: bool = _f(False, "Allow model code from the hub to run. Off: it executes remote code.")
    attn_implementation: str | None = _f(None, "transformers attention implementation, e.g. sdpa, eager.")
    cache_dir: str | None = _f(None, "Where converted GGUF models are cached (default ~/.cache/rlft/models).")


@dataclass
class AdapterConfig:
    type: str = _f("lora", "lora | qlora (4-bit base via bitsandbytes) | none (full fine-tuning).")
    r: int = _f(16, "LoRA rank.")
    alpha: int = _f(32, "LoRA alpha (scaling = alpha / r).")
    dropout: float = _f(0.0, "LoRA dropout. 0 keeps RL rollouts and their log-probs consistent.")
    target_modules: list[str] | str = _f("all-linear", "Modules to adapt: 'all-linear' or a list of names.")
    bias: str = _f("none", "none | all | lora_only.")
    init_from: str | None = _f(None, "Start from an existing adapter directory instead of a fresh one.")
    quant_type: str = _f("nf4", "QLoRA 4-bit type: nf4 | fp4.")
    double_quant: bool = _f(True, "QLoRA nested quantization of the quantization constants.")
    compute_dtype: str = _f("auto", "QLoRA compute dtype: auto | float32 | bfloat16 | float16.")
    ema_decay: float = _f(0.0, "Average the trainable (LoRA) weights over training: after every optimizer step "
                          "shadow = d * shadow + (1 - d) * weights (fp32, rlft.run.ema); periodic evaluation, keep_best, "
                          "the final evaluation and the saved adapter use the average, checkpoints carry it. 0: off; "
                          "e.g. 0.9 (about the last 10 steps) to 0.99.")


@dataclass
class DataConfig:
    source: str = _f("demo:intents", "demo:intents | demo:intent_pairs | demo:intent_kto | a CSV/JSON/JSONL file | "
                     "a `datasets` directory saved with save_to_disk | hf:<org/name> (needs hub access).")
    format: str = _f("auto", "auto | csv | json | jsonl | datasets (auto: from the file suffix).")
    split: str = _f("train", "Split to read from a DatasetDict or hub dataset.")
    columns: dict[str, str] = _f(factory=dict, help="Rename map {name rlft expects: column in your file}, "
                                 "e.g. {utterance: text, intent: label}.")
    system_prompt: str | None = _f(None, "System message prepended to every prompt (null: none).")
    prompt_template: str = _f("{utterance}", "User message built from row columns with str.format, e.g. "
                              "'Customer: {utterance}'. Used for prompt datasets (grpo, ppo).")
    label_column: str = _f("intent", "Ground-truth label column (intent accuracy, label sets).")
    policies: str | None = _f(None, "Per-intent text file (YAML/Markdown, like the judge's policy file; 'demo' = the "
                              "judge's demo guidelines, 'demo:articles' = customer-facing help-centre articles with "
                              "the same facts): adds a `policy` column, each row's text for its label_column, usable "
                              "as {policy} in prompt_template (retrieved context shown to the model). null: none.")
    labels: list[str] | None = _f(None, "Allowed labels. null: the distinct values of label_column in the data.")
    eval_source: str | None = _f(None, "Separate evaluation file; otherwise eval_fraction of source is held out.")
    eval_fraction: float = _f(0.1, "Share of rows held out for evaluation when eval_source is not given.")
    holdout: str = _f("random", "How eval_fraction is held out: random (rows; whole prompts for preference data) | "
                      "grouped (near-duplicate utterances kept on one side, rlft.data.splits; use it for templated data "
                      "such as Bitext, where a random split measures template memory) | prompt (whole distinct "
                      "prompts held out for any algorithm: no prompt text on both sides; sources with the same "
                      "prompts get the same held-out prompts).")
    max_train_samples: int | None = _f(None, "Keep at most this many training rows (after the split).")
    max_eval_samples: int | None = _f(None, "Keep at most this many evaluation rows.")
    demo_size: int = _f(600, "Rows generated for demo: sources.")
    max_prompt_tokens: int | None = _f(2048, "Prompt rows longer than this many tokens (chat template included) "
                                       "are dropped and counted in metrics.json `dropped_rows.too_long` (null: "
                                       "no limit).")
    breakdown_columns: list[str] = _f(factory=list, help="Categorical columns of the eval rows to break "
                                      "the report down by: intent accuracy (and policy_following / "
                                      "system_accuracy with a judge) and row counts per value, in report.json and "
                                      "report.md. 'COLUMN:letters' splits each value into characters and counts a "
                                      "row under each letter it carries (Bitext flags), e.g. ['flags:letters', "
                                      "'category']. []: none.")
    shift_holdout: str = _f("", "With holdout: grouped, hold out by distribution shift instead of eval_fraction: "
                            "'COLUMN:LETTERS' (e.g. 'flags:CQZ') marks rows whose column holds any of the letters; "
                            "near-duplicate groups (rlft.data.splits.shift_split) made mostly of marked rows are held "
                            "out, the rest trains. '': off.")
    augment_noise: float = _f(0.0, "Add a noisy copy (rlft.data.noise: casing, typos, abbreviations, fillers) of every "
                              "TRAINING row, label kept; the value is the per-rule rate, e.g. 0.2. Evaluation rows "
                              "are never changed. 0: off.")
    augment_profanity: bool = _f(False, "With augment_noise: the noisy copies may also get a mild swear word.")


@dataclass
class DecodingConfig:
    """How replies are decoded, everywhere: training rollouts, evaluation, labelling, PPO and export."""

    prefill: str = _f("", "Text every reply starts with, e.g. '<intent>' (appended as token ids after the chat "
                      "template's assistant header). Rewards and reports see it as the start of the completion.")
    constrain_labels: bool = _f(False, "Only decode one allowed label + label_suffix + EOS (prefix-trie logits "
                                "processor; vLLM: structured-outputs regex). Needs the label set.")
    label_suffix: str = _f("</intent>", "Text that closes a label.")
    stop_at_suffix: bool = _f(False, "Without the constraint: end each reply right after label_suffix.")
    free_reply: bool = _f(False, "With constrain_labels: constrain only the head (label + label_suffix), then release "
                          "generation for a free reply ending at EOS or the generation limit (the support agent).")
    reply_max_tokens: int = _f(0, "With free_reply: at most this many reply tokens after the head, then EOS is "
                               "forced (0: up to trainer.max_completion_length / evaluation.max_new_tokens).")
    reply_min_tokens: int = _f(0, "With free_reply: EOS is masked until the reply has this many tokens (an instruct "
                               "model tends to stop right after the head; 0: off).")
    analysis_max_tokens: int = _f(0, "With constrain_labels: each completion opens with a free reasoning block "
                                  "of at most this many tokens (EOS masked), closed by analysis_close (forced once "
                                  "the budget is spent), before the constrained head; set prefill: '<analysis>' to "
                                  "open it. 0: off. Not with the exact label-space objective (label_pg, exact_head).")
    analysis_close: str = _f("</analysis>", "Text that closes the analysis block.")
    label_prefix: str = _f("", "With analysis_max_tokens: text forced right before each label, after the analysis "
                           "block (e.g. '<intent>').")
    lookup: str = _f("", "With free_reply: after the head, append the text that this file (a policy file: label -> "
                     "text, like data.policies; 'demo:articles' is shipped) holds for the label the MODEL chose, as "
                     "context it did not generate (out of the loss and of the scored reply), then the reply. "
                     "Head-triggered retrieval: a wrong head fetches the wrong text. '' : off.")
    reply_stop: str = _f("", "With free_reply: a reply token whose text contains this string ends the reply (it is "
                         "taken as EOS), like a server's stop string; '\\n' keeps the reply to one paragraph. Matched "
                         "per token: prefer one character. '': off.")
    lookup_template: str = _f("\n\nHelp-centre article: {article}\n\nAnswer: According to our help centre,",
                              "With lookup: how the looked-up text is "
                              "shown after the head ({article} is replaced by it).")

    def __post_init__(self) -> None:
        from rlft.errors import RecipeError

        if self.free_reply and not self.constrain_labels:
            raise RecipeError("decoding.free_reply: needs decoding.constrain_labels: true (it releases the label "
                              "constraint after the head)")
        if self.reply_max_tokens < 0:
            raise RecipeError(f"decoding.reply_max_tokens: expected >= 0, got {self.reply_max_tokens}")
        if self.reply_min_tokens < 0:
            raise RecipeError(f"decoding.reply_min_tokens: expected >= 0, got {self.reply_min_tokens}")
        if self.reply_max_tokens and self.reply_min_tokens > self.reply_max_tokens:
            raise RecipeError(f"decoding.reply_min_tokens: expected <= decoding.reply_max_tokens "
                              f"({self.reply_max_tokens}), got {self.reply_min_tokens} (EOS would be masked past the "
                              f"forced end)")
        if self.analysis_max_tokens < 0:
            raise RecipeError(f"decoding.analysis_max_tokens: expected >= 0, got {self.analysis_max_tokens}")
        if self.analysis_max_tokens and not self.constrain_labels:
            raise RecipeError("decoding.analysis_max_tokens: needs decoding.constrain_labels: true (the block is "
                              "closed and followed by the constrained head)")
        if self.analysis_max_tokens and not self.analysis_close:
            raise RecipeError("decoding.analysis_close: expected a non-empty closing text")
        if self.reply_stop and not self.free_reply:
            raise RecipeError("decoding.reply_stop: needs decoding.free_reply: true (it ends the free reply after the "
                              "head)")
        if self.lookup and not self.free_reply:
            raise RecipeError("decoding.lookup: needs decoding.free_reply: true (the looked-up text comes after the "
                              "head, before the free reply)")
        if self.lookup and "{article}" not in self.lookup_template:
            raise RecipeError(f"decoding.lookup_template: expected text containing {{article}}, got "
                              f"{self.lookup_template!r}")
        if self.label_prefix and not self.analysis_max_tokens:
            raise RecipeError("decoding.label_prefix: only applies with decoding.analysis_max_tokens > 0 (without "
                              "the analysis block, end decoding.prefill with it)")


@dataclass
class SignalConfig:
    """GRPO sampling features (`signal:`); defaults reproduce plain TRL GRPO."""

    shared_prefix: bool = _f(False, "Run each distinct prompt once per group (generation and loss) and share its KV "
                             "cache with the group's completions: ~G x fewer prompt tokens per step.")
    decision_tokens_only: bool = _f(False, "With decoding.constrain_labels: leave tokens the constraint forces out "
                                    "of the loss.")
    drop_zero_std: bool = _f(False, "Drop groups whose rewards all tie (zero advantage) from the training batch.")
    refill_rounds: int = _f(0, "With drop_zero_std: up to this many extra generation rounds on fresh prompts to "
                            "refill the batch with groups that have reward variance.")
    keep_surplus: bool = _f(True, "With refill_rounds: keep surplus signal groups for the next step (one step "
                            "stale at most).")
    warn_zero_std: float = _f(0.9, "Warn when the mean fraction of zero-std groups over `warn_window` steps "
                              "exceeds this (1.0: never).")
    warn_window: int = _f(10, "Steps averaged for the zero-signal warning.")
    seed: int = _f(0, "Seed of the refill prompt sampler.")
    baseline: str = _f("group", "Advantage baseline: group (TRL: reward minus the group mean, scaled per "
                       "trainer.scale_rewards) | prompt_ema (reward minus the prompt's running mean reward, unscaled: "
                       "an all-wrong group gets negative advantages and pushes the wrong answers down).")
    baseline_ema: float = _f(0.5, "prompt_ema: weight of the newest group in each prompt's running mean (0..1].")
    success_threshold: float = _f(1.0, "A rollout counts as a success when its total reward is >= this "
                                  "(signal/frac_all_correct, frac_all_wrong, per-prompt success rates).")
    adaptive: bool = _f(False, "With refill_rounds: draw refill prompts by their success so far, preferring low and "
                        "intermediate success (weight max(1 - rate, retest_solved); unseen prompts 1).")
    adaptive_pool: int = _f(4, "adaptive: candidates drawn at random per refill prompt, then weighted.")
    retest_solved: float = _f(0.1, "adaptive: relative weight of prompts every rollout has solved so far (0..1).")
    segment_credit: dict[str, list[str]] = _f(factory=dict, help="With decoding.free_reply: {head: [reward names], "
                                              "reply: [reward names]} (metric names). Each listed reward's weighted, "
                                              "group-normalised advantage goes only to that segment's tokens (head: "
                                              "up to the end of label_suffix; all tokens when the head is not "
                                              "closed); unlisted rewards go to every token. {}: off (one advantage "
                                              "per completion).")
    exact_head: list[str] = _f(factory=list, help="With decoding.constrain_labels and free_reply: rewards of the "
                               "head alone (e.g. [intent]) maximised exactly over the label set by the label-space "
                               "objective (label_pg: settings) on each generation round's prompts, added to the "
                               "GRPO loss; their sampled advantage is dropped (GRPO weight 0; still logged). "
                               "[]: off.")
    exact_head_weight: float = _f(1.0, "Weight of the exact head loss against the GRPO loss.")
    exact_head_extra_prompts: int = _f(0, "Per generation round, also this many training rows drawn at random for "
                                       "the exact head loss alone (one teacher-forced pass each, no rollouts).")
    teacher_lookup: str = _f("", "Context distillation (policy in the weights; docs/support_agent.md#distill): a "
                             "policy file (label -> help-centre article, like decoding.lookup) whose article of the "
                             "row's GOLD label a teacher sees right after the student's head; each reply token's "
                             "advantage gets teacher_coef * (log p_teacher - log p_student) of the sampled token. "
                             "Training only: the student's prompt, evaluation and export never see it. '': off.")
    teacher_lookup_template: str = _f("\n\nHelp-centre article: {article}\n\nAnswer: According to our help centre,",
                                      "With teacher_lookup: how the article is inserted after the head (as "
                                      "decoding.lookup_template, so a lookup-trained adapter is a ready teacher).")
    teacher_adapter: str = _f("", "With teacher_lookup: a LoRA adapter folder merged into a frozen copy of the base "
                              "model as the teacher; '': the model being trained, without gradient "
                              "(self-distillation).")
    teacher_coef: float = _f(1.0, "With teacher_lookup: weight of the per-token term in the reply's advantages.")
    reply_hints: list[str] = _f(factory=list, help="Hinted exploration (rlft.grpo.hints): for hint_share of each "
                                "group's rollouts, once the sampled reply has ended, one of these texts (a move such "
                                "as ' Could you', taken in turn) is appended and the policy writes on from it to "
                                "EOS within the reply budget; the hint's tokens train as the policy's. Teaches moves "
                                "the sampler never makes (a question, a thank-you). Training only. []: off.")
    hint_share: float = _f(0.25, "With reply_hints: share of each group's rollouts that get a hint (0..1], at least "
                           "one per group.")
    teacher_clip: float = _f(5.0, "With teacher_lookup: each token's log-ratio is clipped to [-clip, clip].")


@dataclass
class LabelPGConfig:
    """Exact label-space policy gradient (`algorithm: label_pg`, section `label_pg:`); docs/algorithms.md."""

    weighting: str = _f("log", "Per-prompt weight w(p) on grad log p, p = expected (normalised) reward: "
                        "expected (w=p: maximise E[r]) | maxrl (w=1-(1-p)^maxrl_t) | log (w=1: maximise log E[r]).")
    maxrl_t: int = _f(8, "T of the maxrl weighting (1 = expected reward; larger approaches log).")
    normaliser: str = _f("free", "Policy the expectation is taken under: free (full-vocabulary softmax, what plain "
                         "decoding samples from) | constrained (softmax over the trie's allowed tokens) | both.")
    free_weight: float = _f(0.5, "With normaliser both: weight of the free term (the constrained term gets 1-w).")
    prune_zero_reward: bool = _f(True, "Skip label paths whose normalised reward is 0 (exact: they add nothing to "
                                 "the expectation or its gradient).")
    validity_paths: int = _f(0, "Per prompt, also run this many random label paths that carry no reward and "
                             "maximise the probability that plain decoding stays on the label trie along them "
                             "(label-neutral: it never favours a label). 0: off; >= the label count: every label.")
    validity_weight: float = _f(1.0, "Weight of that term (mean over its paths of -log P(stay on the trie)).")


@dataclass
class RFTConfig:
    """Rejection-sampling fine-tuning (`algorithm: rft`, section `rft:`); docs/algorithms.md#rft."""

    prompts: int = _f(108, "Training prompts sampled (taken in turn from each label when the data has a label "
                      "column, so every label gets its share; drawn with the recipe's seed).")
    samples: int = _f(2, "Completions sampled per prompt under the recipe's decoding and trainer sampling settings "
                      "(temperature, top_k, top_p, max_completion_length).")
    hints: list[str] = _f(factory=list, help="Moves tried where no sample of a prompt reaches min_reward: each text "
                          "(e.g. ' What is your') is appended to one of the prompt's sampled replies once it has "
                          "ended, and the model writes on from it to EOS within the reply budget "
                          "(rlft.grpo.hints). []: off. Needs decoding.free_reply.")
    min_reward: float = _f(1.0, "A completion is kept only when the weighted sum of the recipe's rewards reaches "
                           "this; each prompt keeps its best (the first of equals).")
    keep_per_prompt: int = _f(1, "Distinct completions a prompt may keep, best first (a prompt that passed only "
                              "with hints can keep several hinted replies).")
    hint_from: str = _f("sample", "Which reply a hint is appended to: sample (one of the prompt's sampled replies, "
                        "continued with the trainer's sampling) or greedy (the reply greedy decoding writes, i.e. "
                        "the deployed one, continued greedily: the kept text is the deployed reply plus the move, "
                        "without a temperature-1 sample's slips for the fine-tune to copy).")
    keep_passing_greedy: bool = _f(False, "With hint_from: greedy, score the deployed reply of each prompt no sample "
                                   "passed first: where it passes, the prompt keeps it and is not hinted (a hinted "
                                   "variant's unlikelihood term would push down a stop or move the deployed reply got "
                                   "right). Off: every such prompt is hinted, passing deployed reply or not (the "
                                   "hinted move then spreads to more prompts). Counted as greedy_kept.")
    hint_at: str = _f("end", "Where in that reply the hints go: end (after the whole reply) or sentences (also after "
                      "each of its earlier sentences, the rest of the reply dropped: a move the reply's word budget "
                      "has no room for at its end can replace the sentences after it; one continuation per hint "
                      "and point).")
    hint_repeat: int = _f(1, "Times each completion kept after a hint appears in the fine-tuning set (oversampling: "
                          "the hinted move is one token among a reply's ~40 and a few dozen of the kept completions, "
                          "so at 1 its loss barely moves the stop the model was trained to prefer there). 1: once, "
                          "as every other kept completion.")
    unlikelihood: float = _f(0.0, "Weight of an unlikelihood term (Welleck et al. 2019) at each hinted completion's "
                             "departure from the reply the hint was appended to: -log(1 - p), p the probability of "
                             "what that reply wrote there (stopping, for a hint at its end: EOS or a reply stop "
                             "token; the next sentence's first token, for a hint after an earlier sentence), counted "
                             "like one token of the causal-LM loss. The move a hint teaches is often a near-tie with "
                             "stopping on unseen prompts, which one fine-tune lands on either side of; this pushes "
                             "the stop down where it failed. 0: off.")
    departures: str = _f("hinted", "Which kept completions carry the unlikelihood term: hinted (each hinted one, "
                         "where it leaves the reply its hint was appended to) or all (also each kept sample of a "
                         "prompt whose greedy, i.e. deployed, reply fails min_reward, where it first leaves that "
                         "reply: e.g. a reply that opens with a label the rubric fails, against a sample that does "
                         "not; costs one greedy reply per such prompt). Needs unlikelihood > 0.")
    head_reward: str = _f("", "The reward that judges the head alone (e.g. intent; needs decoding.free_reply). '': "
                          "a head is trained only inside a kept completion, so the labels whose replies seldom pass "
                          "lose their share of the head's loss. Set: every prompt with no kept completion still "
                          "trains the head of its first completion whose head_reward reaches head_min_reward (the "
                          "head's tokens only).")
    head_min_reward: float = _f(1.0, "With head_reward: the value of that reward a head must reach to be trained.")
    round: int = _f(1, "Which round this is (expert iteration: a later stage starting from an earlier round's "
                    "adapter): round k draws its prompts and samples with seed + k - 1, so it sees other prompts.")


@dataclass
class EvaluationConfig:
    before: bool = _f(True, "Evaluate the base model on the held-out split before training.")
    after: bool = _f(True, "Evaluate the trained model on the held-out split after training.")
    max_samples: int = _f(64, "Held-out rows used (greedy decoding).")
    max_new_tokens: int = _f(32, "Generation length for evaluation.")
    batch_size: int = _f(64, "Generation batch size for evaluation (rows decoded together; 64 is the fastest "
                         "measured on 2 CPU cores, benchmarks/eval_speed.py).")
    rewards: bool = _f(True, "Also report the mean of each recipe reward on the held-out completions.")
    every_steps: int = _f(0, "Also evaluate every N optimizer steps during training (0: off); logged as heldout/*.")
    keep_best: bool = _f(False, "With every_steps: save the adapter of the best periodic evaluation to "
                         "output_dir/best and record its step in metrics.json and the model card.")
    best_metric: str = _f("intent_accuracy", "Metric that picks the best evaluation (higher is better): "
                          "intent_accuracy, format_rate, macro_f1, policy_following, system_accuracy (with a judge "
                          "or rubric reward) or reward/<name>; checked by rlft validate.")
    select_fraction: float = _f(0.0, "With every_steps: hold this share of the TRAINING rows back (never trained "
                                "on) as a selection split that periodic evaluation and keep_best use (logged as "
                                "select/*), so the held-out split of the final report plays no part in choosing "
                                "output_dir/best. Carved like data.holdout (grouped: whole near-duplicate clusters; "
                                "prompt or preference data: whole prompts). 0: off (periodic evaluation and "
                                "keep_best use the held-out split; rlft validate warns).")


@dataclass
class ExportConfig:
    merged: bool = _f(False, "Also write the base model with the adapter merged in (output_dir/merged).")


@dataclass
class Recipe:
    """A whole recipe. `trainer` goes to TRL's config class; the other sections are rlft's own."""

    algorithm: str = _f("grpo", "grpo | label_pg | dpo | kto | ppo | reward_model | rft.")
    output_dir: str = _f("runs/rlft", "Where the adapter, recipe, metrics and model card are written.")
    seed: int = _f(42, "Seed for data splits, sampling and initialisation.")
    overwrite: bool = _f(False, "Replace an earlier run in output_dir (its files are deleted first). Off: a "
                         "non-empty output_dir is refused unless trainer.resume_from_checkpoint continues it. With "
                         "resume_from_checkpoint: resume even though the recipe changed (docs/scaling.md#resume).")
    max_train_minutes: float = _f(0.0, "Stop training after this many minutes of optimizer steps (max_train_clock; "
                                  "0: off; periodic evaluation not counted); the adapter, final evaluation, report "
                                  "and model card still follow (rlft/run/time_budget.py).")
    max_train_clock: str = _f("wall", "What max_train_minutes counts: wall (elapsed time) | cpu (this process's CPU "
                              "time, all threads: the same compute on a machine shared with other jobs).")
    model: ModelConfig = _f(factory=ModelConfig, help="The base model.")
    adapter: AdapterConfig = _f(factory=AdapterConfig, help="LoRA / QLoRA / none.")
    data: DataConfig = _f(factory=DataConfig, help="Dataset, columns and prompts.")
    rewards: list[RewardSpec] = _f(factory=list, help="Rewards: [{name, weight, params, alias}].")
    trainer: dict[str, Any] = _f(factory=dict, help="Settings for TRL's config class of the algorithm.")
    decoding: DecodingConfig = _f(factory=DecodingConfig, help="Prefill, label constraint, stop suffix.")
    signal: SignalConfig = _f(factory=SignalConfig, help="GRPO sampling features (docs/recipes.md#signal).")
    label_pg: LabelPGConfig = _f(factory=LabelPGConfig, help="Exact label-space policy gradient settings.")
    rft: RFTConfig = _f(factory=RFTConfig, help="Rejection-sampling fine-tuning settings (algorithm: rft).")
    evaluation: EvaluationConfig = _f(factory=EvaluationConfig, help="Held-out evaluation before/after.")
    export: ExportConfig = _f(factory=ExportConfig, help="Extra exports.")
    source_file: str | None = field(default=None, repr=False, metadata={"help": "Recipe file (not a key)."})


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain mapping of a recipe (what gets saved next to the adapter); secrets never live in recipes."""
    out = dataclasses.asdict(recipe)
    out.pop("source_file", None)
    return out
