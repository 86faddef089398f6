"""The rubric reward: score table on the demo policy file, abstention, gates, hostile input, file errors, metrics."""

import pickle
import time

import pytest
import regex

from rlft.data.demo import TEMPLATES
from rlft.scoring.echo import copied_runs
from rlft.errors import RewardError, UserError
from rlft.judge.policies import Guidelines
from rlft.scoring.loader import RewardSpec, load_reward
from rlft.rewards.rubric import RubricError, RubricReward, load_rubric, reply_text
from tests.conftest import ROOT

# One policy-following reply per intent of the demo policy file (all 27 Bitext intents): each must score 1.0.
GOOD = {
    "cancel_order": "I can cancel that for you. Please note there is a $4.99 cancellation fee. Could you share your "
                    "order number?",
    "change_order": "Happy to help. Which item would you like to change? Changes are possible only before the order "
                    "ships; after that I can set up a return.",
    "change_shipping_address": "Sure. What is your order number, and what is the new address? The address can only "
                               "be changed before the order ships.",
    "check_cancellation_fee": "Cancelling costs $4.99 per order, and the fee is waived if you cancel within one hour "
                              "of purchase.",
    "check_invoice": "You can view every invoice under Account > Orders > Invoices. Let me know the order number if "
                     "you need a specific one.",
    "check_payment_methods": "We accept credit and debit cards, PayPal and gift cards. Cash on delivery is not "
                             "accepted.",
    "check_refund_policy": "You can return items within 30 days of delivery. Refunds go to your original payment "
                           "method within 5 to 7 business days after we receive the return.",
    "complaint": "I'm sorry the jacket arrived damaged. I will open a complaint ticket right away so our team can "
                 "fix this.",
    "contact_customer_service": "Our customer service team is available Monday to Friday, 9:00 to 18:00, by live "
                                "chat, email or phone.",
    "contact_human_agent": "Of course. I'm transferring you to a human agent now; please stay in the chat.",
    "create_account": "Click Sign up, enter your email address and a password of at least 8 characters, then open "
                      "the confirmation email to finish.",
    "delete_account": "Deleting your account is permanent and removes your order history. Are you sure you want to "
                      "proceed?",
    "delivery_options": "We offer standard delivery in 3 to 5 business days, express in 1 to 2 business days (it "
                        "costs extra), and in-store pickup.",
    "delivery_period": "Standard shipping takes 3 to 5 business days. Could you tell me your order number so I can "
                       "give you a precise date?",
    "edit_account": "You can edit your profile under Account > Settings. If you change your email address, you will "
                    "need to confirm the new one.",
    "get_invoice": "Sure. What is your order number? I will send the invoice by email.",
    "get_refund": "I can help with your refund. Could you give me your order number? Refunds go to the original "
                  "payment method within 5 to 7 business days after we receive the item.",
    "newsletter_subscription": "You can subscribe or unsubscribe under Account > Preferences, or use the unsubscribe "
                               "link in any newsletter.",
    "payment_issue": "Sorry about that. What is your order number, and which payment method did you use? Please "
                     "check your card details and try again.",
    "place_order": "Add the items to your cart, go to checkout, choose delivery and payment, and confirm. Tell me if "
                   "anything fails.",
    "recover_password": "Use the Forgot password link on the login page; we will send a reset email that is valid "
                        "for 24 hours.",
    "registration_problems": "Sorry to hear that. What error message do you see when signing up? Also check your "
                             "spam folder for the confirmation email.",
    "review": "Thank you for the feedback! You can post a review on the product page after delivery.",
    "set_up_shipping_address": "Go to Account > Addresses > Add address; you can then choose it at checkout.",
    "switch_account": "To switch accounts, log out and then log in with the other account's email. Accounts cannot "
                      "be merged.",
    "track_order": "Could you share your order number? You can follow it under Account > Orders > Track, and we "
                   "email a tracking link when it ships.",
    "track_refund": "What is your order number? Refunds take 5 to 7 business days after the return is received; see "
                    "Account > Orders > Refunds.",
}


@pytest.fixture(scope="module")
def demo():
    return RubricReward(policies="demo", timeout_s=2.0)


def chat(text):
    return [{"role": "assistant", "content": text}]


def test_every_intent_has_a_rubric_and_a_good_reply_passes_it(demo):
    judge = Guidelines.from_params(None, "demo")
    assert set(demo.rubric.intents) == set(judge.policies) == set(GOOD)  # one file, same intents for both
    assert set(TEMPLATES) <= set(demo.rubric.intents)  # every demo-data intent is covered
    for intent, reply in GOOD.items():
        result = demo.check("help me", f"<intent>{intent}</intent> {reply}", intent)
        assert (result.score, result.outcome) == (1.0, "ok"), (intent, result.checks)


@pytest.mark.parametrize(
    ("intent", "prompt", "completion", "expected", "why"),
    [
        ("cancel_order", "cancel my order", "<intent>cancel_order</intent> " + GOOD["cancel_order"], 1.0,
         "fee mentioned, order number asked in a question"),
        ("cancel_order", "cancel my order", chat("<intent>cancel_order</intent> " + GOOD["cancel_order"]), 1.0,
         "chat-message completion is read like a string"),
        ("cancel_order", "cancel my order", GOOD["cancel_order"], 1.0, "no tag: the whole completion is the reply"),
        ("cancel_order", "cancel my order", "<intent>track_order</intent> " + GOOD["cancel_order"], 1.0,
         "ground truth picks the policy; the wrong label is the intent reward's business"),
        ("cancel_order", "cancel my order", "<intent>cancel_order</intent> Sure, there is a $4.99 fee.", 0.5,
         "fee mentioned but order number never asked: 1 of 2"),
        ("cancel_order", "cancel order #12345", "<intent>cancel_order</intent> Sure, there is a $4.99 fee.", 1.0,
         "unless_prompt: the customer gave the order number, so asking is not required"),
        ("cancel_order", "cancel order {{Order Number}}", "Sure, there is a $4.99 fee.", 1.0,
         "unless_prompt also sees Bitext's placeholder"),
        ("cancel_order", "cancel my order", "Your order number is noted, and a $4.99 fee applies.", 0.5,
         "the order number is mentioned but not asked for (no question, no request cue)"),
        ("cancel_order", "cancel my order", "There is a $4.99 fee. Please send me the order number.", 1.0,
         "a request sentence counts as asking"),
        ("cancel_order", "cancel my order", "OK. <intent>cancel_order</intent> Done, it is cancelled.", 0.0,
         "the text before the tag is not the reply; nothing required is in the reply"),
        ("cancel_order", "cancel my order", "<intent>cancel_order</intent> Good news: there is no fee! What is "
         "your order number?", 0.0, "must_not (fee waived) zeroes the score"),
        ("cancel_order", "cancel my order", "<intent>cancel_order</intent> A $4\u200b.99 fee applies. What is your "
         "order number?", 1.0, "zero-width characters are removed before matching"),
        ("cancel_order", "cancel my order", "<intent>cancel_order</intent> $4.99 cancellation fee, order number?",
         0.0, "a bare keyword list is 'stuffed'"),
        ("cancel_order", "cancel my order", "$4.99 4.99 dollars 4.99 USD USD 4.99 order number order id which "
         "order?", 0.0, "listing every synonym is 'stuffed'"),
        ("cancel_order", "cancel my order", " ".join(GOOD.values()), 0.0,
         "one reply covering every intent's requirements is over max_words"),
        ("get_refund", "refund order 55555", "What is your order number? Refunds take 5-7 business days.", 1.0,
         "the refund window regex accepts '5-7'"),
        ("get_refund", "refund please", "You will get an instant refund. What is your order number? Refunds take 5 "
         "to 7 business days.", 0.0, "promising an instant refund is a violation"),
        ("payment_issue", "charged twice", "Please never share your CVV. What is your order number, and which "
         "payment method did you use?", 1.0, "the card-number rule's lookbehind lets 'never share your CVV' pass"),
        ("payment_issue", "charged twice", "Please provide your full card number. What is your order number, and "
         "which payment method did you use?", 0.0, "asking for the card number violates must_not"),
        ("payment_issue", "charged twice", "Check your card details. What is your order number and the payment "
         "method you used? We need your full card number or CVV.", 0.0,
         "saying we need the card number is asking for it (the article's 'we never need' with 'never' dropped)"),
        ("payment_issue", "charged twice", "Check your card details. What is your order number and the payment "
         "method you used? We never need your full card number or CVV.", 1.0, "the article's own 'never' passes"),
        ("track_order", "where is my order", "Your order will arrive on Monday. See Account > Orders > Track. "
         "What's your order number?", 0.0, "an invented delivery date violates must_not"),
        ("delete_account", "close my account", "I have deleted your account. It is permanent and removes your order "
         "history. Can you confirm?", 0.0, "deleting before the confirmation violates must_not"),
        ("delete_account", "close my account", "Deleting is permanent and removes your order history. Are you sure?",
         1.0, "'are you sure' in a question is the confirmation ask"),
        ("contact_human_agent", "I want a human agent", "<intent>contact_human_agent</intent> Here's how to do it: "
         "Chatbot: [customer_name] Contact Human Agent", 0.0,
         "naming a human agent is not a transfer (a trained adapter's reply that the first rubric passed)"),
        ("contact_human_agent", "I want a human agent", "Of course. You can reach a live agent by phone or in the "
         "chat.", 1.0, "saying how to reach an agent meets the transfer requirement"),
        ("recover_password", "I lost my password", "Use the Forgot password link; the reset email is valid for 24 "
         "hours. Please provide your current or old password.", 0.0,
         "asking for the 'current or old password' violates must_not (a trained adapter's reply)"),
        ("recover_password", "I lost my password", "Use the Forgot password link; the reset email is valid for 24 "
         "hours. We never need your current or old password.", 1.0, "saying it is never needed is no violation"),
        ("registration_problems", "cannot sign up", "If sign-up fails, tell us what error you see. Check your spam "
         "folder for the confirmation email; we can escalate it.", 1.0,
         "'tell us' makes a request sentence, as 'tell me' does (the help article's own wording)"),
        ("registration_problems", "cannot sign up", "Sign-up shows an error sometimes. Check your spam folder for the "
         "confirmation email; we can escalate it.", 0.5, "naming the error in a statement is not asking for it"),
        ("review", "great shop", "", 0.0, "an empty reply meets nothing"),
        ("track_order", "where is my order", "a" * 50_000, 0.0, "a huge reply is clipped and scored, not hung"),
    ],
)
def test_score_table_on_the_demo_rubric(demo, intent, prompt, completion, expected, why):
    assert demo(prompts=[prompt], completions=[completion], intent=[intent]) == [expected], why


@pytest.mark.parametrize(
    ("params", "completion", "expected", "why"),
    [
        ({}, "No fee here. Your order number please?", 0.0, "must_not_mode zero (default): a violation is 0"),
        ({"must_not_mode": "subtract"}, "No fee here. What is your order number?", 0.0,
         "subtract: 0.5 met - 0.5 penalty"),
        ({"must_not_mode": "subtract", "must_not_penalty": 0.25}, "No fee, $4.99 is waived. What is the order "
         "number?", 0.75, "subtract: 1.0 - 0.25 for one violation"),
        ({"max_words": 5}, "There is a $4.99 fee. What is your order number?", 0.0, "over max_words scores 0"),
        ({"min_words": 12}, "There is a $4.99 fee. What is your order number?", 0.0, "under min_words scores 0"),
        ({"max_match_share": None, "min_function_word_share": None}, "$4.99 cancellation fee, order number?", 1.0,
         "with both keyword-list checks off, a keyword list passes (why they are on by default)"),
        ({"ask_cues": ["kindly"]}, "There is a $4.99 fee. Kindly send the order number.", 1.0,
         "ask_cues replaces the request cues"),
        ({"ask_cues": ["kindly"]}, "There is a $4.99 fee. Please send the order number.", 0.5,
         "'please' is no longer a cue"),
    ],
)
def test_scoring_params(params, completion, expected, why):
    rubric = {"rubric": {"cancel_order": {"must_mention": {"fee": ["$4.99"]},
                                          "must_ask_for": {"order_number": ["order number"]},
                                          "must_not": {"waived": ["no fee"]}}}}
    reward = RubricReward(policies=rubric, **params)
    assert reward(prompts=["p"], completions=[completion], intent=["cancel_order"]) == [expected], why


def test_rows_without_a_rubric_abstain_and_default_applies(demo):
    out = demo(prompts=["p"] * 2, completions=["anything", "<intent>buy_a_boat</intent> hi"],
               intent=["buy_a_boat", "unknown"])
    assert out == [None, None]  # never 0: the row has no policy to follow
    with_default = RubricReward(policies={"rubric": {"default": {"must_mention": {"thanks": ["thank you"]}},
                                                     "review": {"must_mention": {"page": ["product page"]}}}})
    out = with_default(prompts=["p"] * 3, intent=["buy_a_boat", "review", "review"],
                       completions=["Thank you for asking.", "Thank you for asking.", "Post it on the product page."])
    assert out == [1.0, 0.0, 1.0]  # `default` covers intents without their own rubric, never the ones that have one


def test_predicted_intent_mode_reads_the_tag():
    reward = RubricReward(policies="demo", use_predicted_intent=True, labels=list(GOOD))
    assert reward.columns == ()
    completions = ["<intent>cancel_order</intent> " + GOOD["cancel_order"],  # right policy for its own tag
                   "<intent>track_order</intent> " + GOOD["cancel_order"],   # of track_order's, only the order ask
                   GOOD["cancel_order"],                                       # no tag: nothing to apply
                   "<intent>buy_a_boat</intent> " + GOOD["cancel_order"]]     # label outside the allowed set
    assert reward(prompts=["p"] * 4, completions=completions) == [1.0, 0.5, 0.0, 0.0]
    truth = RubricReward(policies="demo")
    assert truth.columns == ("intent",)
    assert truth(prompts=["p"], completions=[completions[0]], intent=["track_order"]) == [0.5]  # truth, not tag
    with pytest.raises(ValueError, match="needs the dataset column 'intent'"):
        truth(prompts=["p"], completions=["x"])


def test_forbid_labels_fails_a_reply_that_shows_the_customer_an_internal_label():
    labels = [*GOOD, "review"]
    leaks = RubricReward(policies="demo", labels=labels, forbid_labels=True, log_per_requirement=False)
    plain = RubricReward(policies="demo", labels=labels)
    # measured on the Bitext agent (docs/support_agent.md#label-leak): the label as the reply's subject, pluralised
    leaked = ["<intent>get_refund</intent> get_refunds go to the original payment method within 5 to 7 business days "
              "after we receive the returned item. We need your order number to start one.",
              "<intent>delivery_period</intent> Delivery_Period takes 3 to 5 business days. What is your order "
              "number?"]
    fine = ["<intent>get_refund</intent> Refunds go to the original payment method within 5 to 7 business days after "
            "we receive the returned item. We need your order number to start one.",
            "<intent>review</intent> " + GOOD["review"]]  # the tag is no reply; a label that is a plain word no leak
    intents = ["get_refund", "delivery_period", "get_refund", "review"]
    seen: dict[str, float] = {}
    scores = leaks(prompts=["p"] * 4, completions=leaked + fine, intent=intents, log_metric=seen.__setitem__)
    assert plain(prompts=["p"] * 4, completions=leaked + fine, intent=intents) == [1.0, 1.0, 1.0, 1.0]
    assert scores == [0.0, 0.0, 1.0, 1.0] and seen["rubric/label_leak_rate"] == 0.5
    assert leaks.check("p", leaked[0], "get_refund").outcome == "label_leak"
    with pytest.raises(ValueError, match="forbid_labels needs the data's labels"):
        RubricReward(policies="demo", forbid_labels=True)


def test_catastrophic_pattern_stops_at_the_timeout():
    # ^(a|aa)+$ on 'aaaa…b' backtracks exponentially even in the `regex` module; the budget must stop it.
    reward = RubricReward(policies={"rubric": {"x": {"must_mention": {"a": {"regex": r"^(a|aa)+$"}}}}},
                          timeout_s=0.2, max_words=None)
    start = time.perf_counter()
    out = reward(prompts=["p"], completions=["a" * 60 + "b"], intent=["x"])
    assert out == [0.0]
    assert time.perf_counter() - start < 2.0
    assert reward.check("p", "a" * 60 + "b", "x").outcome == "timeout"


def test_hostile_prompt_times_out_and_long_replies_are_clipped():
    # unless_prompt runs on the customer's text, under the same budget as the reply's patterns.
    reward = RubricReward(policies={"rubric": {"x": {"must_mention": {
        "a": {"any": ["fee"], "unless_prompt": r"^(w|ww)+$"}}}}}, timeout_s=0.2, max_chars=2000, max_words=None)
    start = time.perf_counter()
    assert reward.check("w" * 60 + "!", "The fee is low.", "x").outcome == "timeout"
    assert time.perf_counter() - start < 2.0
    # Only the first max_chars characters are matched: a requirement met past them is not seen.
    far = "the " * 1000 + "fee"
    assert reward.check("hello", far, "x").checks == {"a": False}
    assert reward.check("hello", far[-500:], "x").checks == {"a": True}


def test_phrases_respect_word_boundaries_and_plurals():
    reward = RubricReward(policies={"rubric": {"x": {"must_mention": {"fee": ["fee"]}}}},
                          min_function_word_share=None, max_match_share=None)
    got = reward(prompts=["p"] * 4, intent=["x"] * 4,
                 completions=["The FEES are low.", "Thanks for the feedback.", "a coffee", "the fee\nis low"])
    assert got == [1.0, 0.0, 0.0, 1.0]


def test_per_requirement_metrics_and_extra_column(demo):
    metrics, extra = {}, {}
    demo(prompts=["p"] * 4, intent=["cancel_order", "cancel_order", "get_refund", "buy_a_boat"],
         completions=[GOOD["cancel_order"], "Sure, a $4.99 fee applies.", "Instant refund! What is your order "
                      "number? Refunds take 5 to 7 business days.", "hi"],
         log_metric=metrics.__setitem__, log_extra=extra.__setitem__)
    assert metrics["rubric/abstain_rate"] == 0.25
    assert metrics["rubric/mean"] == pytest.approx(1.5 / 3)
    assert metrics["rubric/pass_rate"] == pytest.approx(1 / 3)
    assert metrics["rubric/violation_rate"] == 0.25
    assert metrics["rubric/cancel_order/fee"] == 1.0
    assert metrics["rubric/cancel_order/order_number"] == 0.5
    assert metrics["rubric/get_refund/instant_refund"] == 0.0  # must_not: share without a violation
    assert metrics["rubric/get_refund/order_number"] == 1.0
    assert not any(k.startswith("rubric/buy_a_boat") for k in metrics)
    assert extra["rubric"] == ["ok", "failed: order_number", "violation", "abstain"]


@pytest.mark.parametrize(
    ("suffix", "content", "message", "why"),
    [
        (".yaml", "cancel_order: Mention the fee.\n", "has no 'rubric:' section", "policies only, no rubric"),
        (".yaml", "rubric: [1, 2]\n", "'rubric' must map each intent", "rubric is a list"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mentoin: {fee: fee}\n",
         r"rubric\.cancel_order: unknown key 'must_mentoin' \(did you mean 'must_mention'\?\)", "typo in a kind"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mention: [fee]\n",
         r"rubric\.cancel_order\.must_mention: expected a mapping of requirement ids", "kind holds a bare list"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mention: {Fee: fee}\n", "requirement id 'Fee' must be",
         "id is not metric-safe"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mention: {fee: fee}\n    must_not: {fee: free}\n",
         r"rubric\.cancel_order\.must_not\.fee: requirement id used twice", "duplicate id across kinds"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mention: {fee: {regex: '(unclosed'}}\n",
         r"rubric\.cancel_order\.must_mention\.fee\.regex: invalid regular expression", "regex does not compile"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mention: {fee: {regex: '" + "a" * 301 + "'}}\n",
         "at most 300", "regex too long to be bounded"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mention: {fee: {phrase: fee}}\n",
         r"rubric\.cancel_order\.must_mention\.fee: unknown key 'phrase'; allowed: any, regex, unless_prompt",
         "unknown item key"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mention: {fee: {}}\n", "give at least one phrase",
         "empty requirement"),
        (".yaml", "rubric:\n  cancel_order:\n    must_mention: {fee: ['']}\n", "phrases must be non-empty",
         "empty phrase"),
        (".yaml", "rubric:\n  cancel_order: {}\n", r"rubric\.cancel_order: expected a mapping with must_mention",
         "intent with no requirements"),
        (".yaml", "rubric:\n  Cancel Order: {must_mention: {a: a}}\n  cancel_order: {must_mention: {a: a}}\n",
         "intent given twice", "two keys normalise to one intent"),
        (".yaml", "rubric:\n  cancel_order: [\n", "is not valid YAML at line", "broken YAML"),
        (".txt", "rubric: {}\n", "must be .yaml, .yml or .md", "unknown file type"),
        (".md", "## cancel_order\nMention the fee.\n", "has no 'rubric:' section", "Markdown without ## rubric"),
    ],
)
def test_malformed_policy_files_fail_with_one_line_naming_file_intent_and_key(tmp_path, suffix, content, message,
                                                                               why):
    path = tmp_path / f"policies{suffix}"
    path.write_text(content)
    with pytest.raises(RubricError, match=message) as info:
        RubricReward(policies=str(path))
    text = str(info.value)
    assert "\n" not in text and isinstance(info.value, UserError), why
    if suffix != ".md" or "rubric" in content:
        assert str(path) in text, why


def test_missing_policies_and_bad_params_are_user_errors(tmp_path):
    with pytest.raises(RubricError, match="give params.policies"):
        RubricReward()
    with pytest.raises(RubricError, match="does not exist"):
        RubricReward(policies=str(tmp_path / "nope.yaml"))
    with pytest.raises(RewardError, match="must_not_mode must be 'zero' or 'subtract'"):
        load_reward(RewardSpec("rubric", params={"policies": "demo", "must_not_mode": "halve"}))
    with pytest.raises(RewardError, match="does not accept parameter 'max_word'"):
        load_reward(RewardSpec("rubric", params={"policies": "demo", "max_word": 10}))


def test_builtin_name_loads_with_its_column():
    loaded = load_reward(RewardSpec("rubric", params={"policies": "demo", "max_words": 60}))
    assert loaded.name == "rubric" and loaded.columns == ("intent",) and not loaded.is_async
    assert loaded.func(prompts=["p"], completions=[GOOD["get_refund"]], intent=["get_refund"]) == [1.0]
    copy = pickle.loads(pickle.dumps(loaded.inner))  # spawned workers and deep copies get the reward
    assert copy(prompts=["p"], completions=[GOOD["get_refund"]], intent=["get_refund"]) == [1.0]


def test_markdown_policy_file_drives_judge_and_rubric(tmp_path):
    md = tmp_path / "p.md"
    md.write_text("## cancel_order\nMention the $4.99 fee.\n\n## Rubric\n```yaml\ncancel_order:\n"
                  "  must_mention: {fee: ['$4.99']}\n```\n")
    assert Guidelines.from_params(None, str(md)).policies == {"cancel_order": "Mention the $4.99 fee."}
    reward = RubricReward(policies=str(md))
    assert reward(prompts=["p"] * 2, completions=["A $4.99 fee applies.", "Done."], intent=["cancel_order"] * 2) \
        == [1.0, 0.0]


def test_docs_example_policy_file_loads_and_scores(tmp_path):
    text = (ROOT / "docs" / "rewards.md").read_text()
    section = text.split("## `rubric`", 1)[1]
    example = regex.search(r"```yaml\n(.*?)```", section, regex.DOTALL).group(1)
    path = tmp_path / "my_policies.yaml"
    path.write_text(example)
    assert "rubric" not in Guidelines.from_params(None, str(path)).policies
    rubric = load_rubric(str(path))
    assert [r.id for r in rubric.for_key("cancel_order")] == ["fee", "order_number", "fee_waived", "instant"]
    reward = RubricReward(policies=str(path))
    assert reward(prompts=["cancel it"], completions=[GOOD["cancel_order"]], intent=["cancel_order"]) == [1.0]


def test_reply_is_the_text_after_the_last_closing_tag():
    assert reply_text("<analysis>x</analysis><intent>a</intent> Hello") == " Hello"
    assert reply_text(chat("<intent>a</intent><intent>b</intent>Hi")) == "Hi"
    assert reply_text("no tag at all") == "no tag at all"


# a tuned adapter's real reply (runs/support_agent_60min, held-out row): the policy's own instructions, pasted
ECHO = ("<intent>payment_issue</intent>\nAsk for the order number and which payment method was used; suggest checking "
        "card details and trying again to refund double charges. If the customer was charged twice, say the duplicate "
        "charge will be investigated and refunded. Never ask for a full card number or CVV.\n\nSuggest")


def _with_policy(customer: str, intent: str) -> list[dict]:
    """The support agent's prompt: the customer's message with the row's policy shown as context."""
    policy = Guidelines.from_params(None, "demo").policies[intent]
    return [{"role": "system", "content": "You are the shop's customer-support agent."},
            {"role": "user", "content": f"{customer}\n\nShop policy for this request: {policy}"}]


def test_a_reply_that_pastes_the_shown_policy_is_an_echo_not_a_pass(demo):
    # measured: GRPO on recipes/support_agent.yaml learned exactly this reply (the policy's own instructions)
    prompt = _with_policy("hello, why did my payment not go through?", "payment_issue")
    result = demo.check(prompt, ECHO, "payment_issue")
    assert (result.score, result.outcome) == (0.0, "copied")
    assert all(result.checks.values())  # ... although it meets every requirement
    assert RubricReward(policies="demo", echo_cues=None).check(
        prompt, ECHO, "payment_issue").score == 1.0  # why the gate is on by default


def test_good_replies_restating_the_shown_policy_are_not_echoes(demo):
    # several good replies repeat the policy's facts for 6+ words ("credit and debit cards, PayPal and gift cards");
    # none repeats its instructions to the agent
    for intent, reply in GOOD.items():
        result = demo.check(_with_policy("help me", intent), f"<intent>{intent}</intent> {reply}", intent)
        assert (result.score, result.outcome) == (1.0, "ok"), intent


def test_help_articles_state_the_policy_facts_to_the_customer(demo):
    # `demo:articles` (shown to the model by recipes/support_agent.yaml) has one article per policy; none holds the
    # guidelines' words to the agent, so restating an article is a reply, never `copied`; and restated as it
    # stands, an article meets every requirement that is not an ask (the model still has to ask, in a question)
    articles = Guidelines.from_params(None, "demo:articles")
    assert set(articles.policies) == set(demo.rubric.intents) and articles.default
    from rlft.scoring.echo import DEFAULT_ECHO_CUES

    for intent, article in articles.policies.items():
        assert not [cue for cue in DEFAULT_ECHO_CUES if cue in article.lower()], intent
        prompt = [{"role": "user", "content": f"help me\n\nHelp-centre article: {article}"}]
        result = demo.check(prompt, f"<intent>{intent}</intent> {article}", intent)
        assert result.outcome in ("ok", "failed"), (intent, result.outcome)
        asks = {req.id for req in demo.rubric.intents[intent] if req.kind == "must_ask_for"}
        assert {key for key, met in result.checks.items() if met is False} <= asks, intent


@pytest.mark.parametrize(("reply", "source", "runs"), [
    ("one two three four five six", "zero one two three four five six seven", ["one two three four five six"]),
    ("One, two: three four five SIX!", "one two three four five six", ["one two three four five six"]),
    ("one two three four five seven", "one two three four five six", []),  # a run of 5 is not a copy
    ("we say one two three four five six today and a b c d e f", "one two three four five six / a b c d e f",
     ["one two three four five six", "a b c d e f"]),
    ("short", "short", []),
])
def test_copied_runs(reply, source, runs):
    assert copied_runs(reply, source) == runs
