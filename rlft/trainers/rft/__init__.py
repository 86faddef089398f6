"""`algorithm: rft`: rejection-sampling fine-tuning (RAFT, Dong et al. 2023; ReST-EM, Singh et al. 2023): sample, keep
what the rewards pass, fine-tune on it by maximum likelihood. docs/algorithms.md#rft.

One round, before the optimiser's first step:

1. `rft.prompts` training prompts, taken in turn from each label when the data has a label column (so a rare label
   gets its share), `rft.samples` completions each, decoded exactly as GRPO's rollouts and evaluation decode them:
   `rlft.decoding.generation.generate_ids` under the recipe's constraint (constrained head, looked-up article, free
   reply) with the trainer's sampling settings (`temperature`, `top_k`, `top_p`, `max_completion_length`).
2. Every completion is scored by the recipe's rewards, weighted and summed as evaluation scores them
   (`rlft.scoring.completions.score`; the rewards see what evaluation shows them: the looked-up text left out).
3. Where no sample of a prompt reaches `rft.min_reward`, each of `rft.hints` is appended to one of its replies once
   that reply has ended and the model writes on from it (`rlft.grpo.hints.extend_with_hints`, the continuation GRPO's
   hinted exploration uses), and the hinted completions are scored the same way. `rft.hint_from: greedy` appends
   the hints to the reply greedy decoding writes (the deployed one) and continues greedily instead; with
   `rft.keep_passing_greedy` that reply is scored first, and a prompt whose deployed reply passes keeps it and is not
   hinted (a hinted variant would push down, with `rft.unlikelihood`, a choice the deployed reply got right).
   `rft.hint_at: sentences` also tries each hint after each earlier sentence of that reply, the rest of it dropped
   (`sampler.Sampler.sentence_cuts`): a move the reply's word budget has no room for at its end (the article copied
   whole, then a question) can replace the sentences after it.
4. Each prompt keeps its best completion(s) reaching `rft.min_reward` (up to `rft.keep_per_prompt` distinct ones: a
   prompt that passed only with hints can keep several hinted replies, weighting the rare move); the kept completions
   go to `output_dir/rft_samples.jsonl` (text, summed reward, each reward's value, hint) and the counts to
   `output_dir/rft_summary.json`.
   A completion kept after a hint enters the fine-tuning set `rft.hint_repeat` times (oversampling the rare move).
5. A `transformers.Trainer` fine-tunes on them (causal-LM loss): on every token the model wrote and on a hint's
   tokens (a hint that pays is the move being taught, as in GRPO's hinted exploration), never on the prompt or the
   looked-up text (`Constraint.lookup_mask`, GRPO's `env_mask`). With `rft.unlikelihood` > 0, each hinted completion
   also pushes down, where it departs from the reply its hint was appended to, what that reply wrote there (the
   stop, or the next sentence): `rlft.trainers.rft.unlikelihood`.

Why it exists: GRPO learns a move only from the rollouts of the few prompts of each step and pays a backward pass
for every rollout, passing or not. Here sampling is forward-only and only the kept completions are trained on, so
one CPU minute reaches far more prompts: the cheap way to turn moves the hints found (a question for the order
number, an apology) into the policy's own before GRPO polishes it (docs/support_agent.md#rft).

`trainer:` is GRPO's config (GRPOConfig), so a stage that extends a GRPO recipe keeps its keys: rft reads the
sampling keys above and the optimiser's (learning rate, batch size, epochs or max_steps, scheduler); GRPO's loss
keys (`beta`, `loss_type`, `num_generations`, ...) do nothing here. Sampling is not counted by
`max_train_minutes` (only optimiser steps are); `rft.prompts` and `rft.samples` set its cost.

Several processes (`accelerate launch --num_processes N`) split the sampling: process k samples and scores every N-th
picked prompt from the k-th (`collect.share`: each gets every label's turn alike), all with the round's seed, then
every process gathers all the kept completions (`collect.merge`): the same list on each, in the order one process lists
them (prompt order), which the Trainer then shards as any dataset. Which completion a prompt draws depends on N (one
torch generator draws for a whole batch of prompts; one per prompt would cost the batching), so N processes keep a
different set than one, as another seed would. The summary sums the counts (`sampling_cpu_s` too: the CPU all processes
spent, about what one process would spend alone) and adds `processes` and `sampling_cpu_s_per_process`; only the main
process writes the two files and prints the line.

Modules: `trainer` (`build_trainer`, `config_class`, `check_recipe`: what the algorithm registry calls),
`selection` (which prompts, which completions are kept, departures), `sampler` (samples, the greedy reply, hinted
continuations, sentence cuts), `collect` (steps 1-4 in one or several processes), `examples` (the fine-tuning set
and its collator), `unlikelihood` (the loss with the unlikelihood term).
"""
