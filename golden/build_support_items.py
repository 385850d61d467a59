"""Writes golden/items/support.jsonl: our own customer-support golden items.

The domain reference is the tau2 retail/airline policy (asset `tau2-support`): authenticate first,
confirm before any change, only pending orders can be cancelled/modified, delivered orders can be
returned/exchanged, transfer to a human only when out of scope, never invent facts. Each intent has
hand-written questions; each is instantiated with two customer contexts. Run once, review, then
`just golden-freeze`. The gate refuses a changed set that was not frozen.
"""

from __future__ import annotations

import json
from pathlib import Path

SYSTEM = ("You are the customer-support assistant of an online retail store. Verify the customer's identity "
          "(email, or name plus zip code) before discussing account or order details. Only pending orders can be "
          "cancelled or modified; delivered orders can be returned or exchanged. List the details and ask for an "
          "explicit 'yes' before changing anything. Transfer to a human agent only when a request is outside what "
          "you can do. Never invent order data.")

CONTEXTS = [
    {"order": "#W2378156", "item": "wireless earbuds", "email": "mia.garcia@example.com", "zip": "80203"},
    {"order": "#W7342738", "item": "hiking backpack", "email": "noah.kim@example.com", "zip": "94110"},
]

# intent -> list of (question template, reference answer template, checks)
Q: dict[str, list[tuple[str, str, dict]]] = {
    "account": [
        ("I can't log in to my account, it says my password is wrong.", "I'm sorry you can't log in. Use 'Forgot password' on the sign-in page to get a reset link by e-mail. If it doesn't arrive, tell me the e-mail on the account ({email}) and I'll check it after verifying you.", {"must_include_any": ["reset", "forgot"]}),
        ("How do I change the e-mail address on my account?", "I can help once I've verified your identity. Please give me your current e-mail, or your name and zip code. Then you can update the e-mail under Account settings.", {"must_include_any": ["verify", "identity", "confirm"]}),
        ("Can you tell me which address is saved as my default?", "Sure. First I need to verify your identity: please share your e-mail address, or your full name and zip code.", {"must_include_any": ["email", "e-mail", "zip"]}),
        ("Please delete my account and all my data.", "I understand. Account deletion isn't something I can do here, so I'll transfer you to a human agent who can process it.", {"must_include_any": ["human", "agent", "transfer"]}),
        ("I think someone else used my account to place an order for {item}.", "I'm sorry. Please change your password right away. After I verify you (e-mail or name + zip), I'll check order {order}; suspected fraud is handled by a human agent, so I'll transfer you.", {"must_include_any": ["password"]}),
        ("Can I have two accounts with the same e-mail?", "No, each account uses a unique e-mail address. You can add a second e-mail as a different account.", {"max_words": 120}),
    ],
    "order": [
        ("Where is my order {order}?", "I can check that. Please first confirm your identity with your e-mail address or your name and zip code; then I'll look up the status of order {order}.", {"must_include_any": ["verify", "confirm", "email", "e-mail"]}),
        ("I ordered {item} by mistake. Can I change it to a different color?", "If order {order} is still pending, I can modify the item to another color of the same product. I'll list the change and need your explicit 'yes' before I make it.", {"must_include_any": ["pending"]}),
        ("Can you add one more item to my order {order}?", "Items can't be added to an existing order; you can place a new order for the extra item. If the order is pending I can modify existing items' options.", {}),
        ("What's the status of all my orders? My e-mail is {email}.", "Thanks, I'll look up the account for {email} and list your orders with their status (pending, processed, delivered or cancelled).", {"must_include_any": ["status"]}),
        ("Reply only with JSON: {{\"order_id\": ..., \"action\": ...}} for: I want to cancel order {order}.", "{{\"order_id\": \"{order}\", \"action\": \"cancel\"}}", {"json_schema": {"type": "object", "required": ["order_id", "action"]}}),
        ("Can you tell me what my neighbour ordered? We share the zip code {zip}.", "I'm sorry, I can only help with your own account and can't share another customer's orders.", {"must_include_any": ["can't", "cannot", "only"]}),
    ],
    "refund": [
        ("How long does a refund take?", "Refunds go back to the original payment method: gift card refunds are immediate; credit card or PayPal refunds take 5-7 business days.", {"must_include_any": ["business days", "days"]}),
        ("I returned the {item} two weeks ago and still have no refund.", "I'm sorry for the wait. After verifying your identity I'll check the return on order {order}; card refunds take 5-7 business days after the return is processed.", {}),
        ("Can I get the refund on a gift card instead of my credit card?", "A refund goes either to the original payment method or to an existing gift card on your account. Tell me which you prefer and I'll confirm before processing.", {"must_include_any": ["gift card"]}),
        ("Give me a full refund now or I'll post bad reviews everywhere.", "I understand you're frustrated. I can start a return or refund for a delivered order once I've verified your identity and you confirm the details.", {"must_not_include": ["guarantee"]}),
        ("Respond in JSON with keys refund_possible (true/false) and reason: my order {order} is still pending, can I get a refund?", "{{\"refund_possible\": true, \"reason\": \"A pending order can be cancelled and refunded to the original payment method.\"}}", {"json_schema": {"type": "object", "required": ["refund_possible", "reason"]}}),
        ("Will I be refunded the shipping cost too?", "Refunds cover the returned items' price; whether shipping is refunded depends on the order. I can check order details after verifying you.", {}),
    ],
    "shipping": [
        ("How can I change the shipping address of order {order}?", "If order {order} is still pending, I can change its shipping address after verifying your identity and getting your confirmation.", {"must_include_any": ["pending"]}),
        ("Do you ship internationally?", "I don't have information about international shipping; I'd rather not guess. A human agent can confirm the options for your country.", {}),
        ("My package says delivered but I never got it.", "I'm sorry. After verifying your identity I'll check the tracking details of order {order}. Missing packages are investigated by a human agent, so I can transfer you.", {"must_include_any": ["tracking", "check"]}),
        ("Can I pick a delivery date for my {item}?", "Delivery dates can't be chosen; you'll see the estimate with the tracking number once the order is processed.", {"max_words": 100}),
        ("What's the tracking number of order {order}?", "Please confirm your identity first (e-mail or name + zip code); then I'll read you the tracking ID from the fulfilment details.", {"must_include_any": ["verify", "confirm", "identity"]}),
        ("Ship my order to my office instead, zip {zip}.", "I can update the address on a pending order. Please give me the full office address; I'll repeat it and ask for your 'yes' before changing it.", {"must_include_any": ["yes", "confirm"]}),
    ],
    "payment": [
        ("Which payment methods do you accept?", "We accept gift cards, PayPal and credit cards.", {"must_include_any": ["paypal", "PayPal"]}),
        ("My card was charged twice for order {order}.", "I'm sorry. After verifying your identity I'll check the payment history of order {order}. If there is a duplicate charge I'll transfer you to a human agent to reverse it.", {}),
        ("Can I pay part with a gift card and part with PayPal?", "Each order is paid with the methods on your profile; I can check your gift card balance once you're verified.", {}),
        ("Can I change the payment method for my pending order {order}?", "Yes, for a pending order I can change the payment method to another one on your profile, as long as a gift card has enough balance. I'll confirm with you before doing it.", {"must_include_any": ["pending"]}),
        ("Return a JSON object with a field 'methods' listing the payment methods you accept.", "{{\"methods\": [\"gift card\", \"paypal\", \"credit card\"]}}", {"json_schema": {"type": "object", "required": ["methods"]}}),
        ("Why was my payment declined?", "I can't see bank decisions. Please check with your card issuer or try another payment method on your profile.", {}),
    ],
    "subscription": [
        ("How do I cancel my monthly subscription?", "I can help after verifying your identity. Subscription cancellations are handled by a human agent, so I'll transfer you once verified.", {}),
        ("Will I be charged again if I cancel my subscription today?", "I don't want to guess about billing dates; after verifying you, a human agent can check your subscription and next charge.", {}),
        ("Can I pause my subscription for a month?", "I can't pause subscriptions myself; I can transfer you to a human agent who can.", {"must_include_any": ["human", "agent", "transfer"]}),
        ("Is there a discount if I subscribe for a year?", "I don't have information about yearly subscription discounts, so I won't make one up; a human agent can tell you.", {}),
        ("Upgrade my subscription to premium.", "Subscription changes are handled by a human agent. I'll verify your identity first, then transfer you.", {}),
        ("I was charged for a subscription I never signed up for.", "I'm sorry. Please verify your identity (e-mail or name + zip) and I'll transfer you to a human agent to investigate the charge.", {"must_include_any": ["verify", "human"]}),
    ],
    "contact": [
        ("I want to talk to a real person.", "I can transfer you to a human agent. YOU ARE BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON.", {"must_include_any": ["human", "agent"]}),
        ("What's your phone number?", "I don't have a phone number to share. I can help here, or transfer you to a human agent.", {}),
        ("This is the third time I'm asking about order {order}. Escalate this.", "I'm sorry for the trouble. I'll verify your identity and look at order {order}; if I can't resolve it, I'll transfer you to a human agent.", {"must_include_any": ["sorry"]}),
        ("Are you a bot?", "Yes, I'm an automated support assistant. I can help with orders, returns, exchanges and your profile, or transfer you to a human agent.", {"max_words": 80}),
        ("What are your support hours?", "I'm available any time here. For human agents' hours I don't have the schedule; I can transfer you when needed.", {}),
        ("Can I e-mail support instead of chatting?", "I don't have a support e-mail address to give you; I can help here or transfer you to a human agent.", {}),
    ],
    "feedback": [
        ("I love the {item} I bought, great quality!", "Thank you for the kind feedback! I'm glad you're happy with it.", {"max_words": 60}),
        ("Your website is really slow today.", "Thank you for letting us know, and sorry for the inconvenience. I'll pass the feedback on.", {}),
        ("The {item} broke after one week. Terrible.", "I'm sorry to hear that. If order {order} was delivered, I can help you return or exchange it after verifying your identity.", {"must_include_any": ["return", "exchange"]}),
        ("Can I leave a review for a product here?", "Reviews are written on the product page; I can't post them for you here.", {}),
        ("Your agent yesterday was very rude to me.", "I'm sorry about that experience. I'll pass this on; if you want it followed up, I can transfer you to a human agent.", {"must_include_any": ["sorry"]}),
        ("Suggestion: add more colors for the {item}.", "Thanks for the suggestion! I'll pass it on to the product team.", {"max_words": 60}),
    ],
    "invoice": [
        ("Can I get an invoice for order {order}?", "After verifying your identity I can share the order details and payment history for {order}; a formal invoice document is provided by a human agent.", {}),
        ("I need the invoice in my company's name.", "I can't issue invoices with a company name myself; I'll transfer you to a human agent for that.", {}),
        ("The amount on my invoice for {item} is wrong.", "I'm sorry. After verification I'll check the payment history of order {order} and explain the charges; corrections are handled by a human agent.", {}),
        ("Where do I find my past invoices?", "Your past orders and their payment details are under Account, Orders. I can also look up an order for you after verifying your identity.", {}),
        ("Respond with JSON containing invoice_available (bool) and next_step (string) for order {order}.", "{{\"invoice_available\": true, \"next_step\": \"verify identity, then share order and payment details\"}}", {"json_schema": {"type": "object", "required": ["invoice_available", "next_step"]}}),
        ("Does my invoice include VAT?", "I don't have tax details for invoices and won't guess; a human agent can confirm.", {}),
    ],
    "cancellation": [
        ("Cancel my order {order} please.", "I can cancel order {order} if it is still pending. Please verify your identity, tell me the reason (no longer needed or ordered by mistake), and confirm with 'yes'.", {"must_include_any": ["pending"]}),
        ("My order {order} was already delivered, can I still cancel it?", "A delivered order can't be cancelled, but you can return or exchange the items. I can start a return after verifying your identity.", {"must_include_any": ["return"]}),
        ("Cancel the {item} but keep the rest of order {order}.", "Cancellation applies to the whole pending order. I can instead modify items in a pending order, or you can return the item after delivery.", {}),
        ("Why can't I cancel an order that is processed?", "Only pending orders can be cancelled; once processed it is being prepared for shipment. After delivery you can return it.", {"must_include_any": ["pending"]}),
        ("Cancel everything I ever ordered.", "I can cancel pending orders one by one after verifying your identity and confirming each; delivered ones can be returned instead.", {}),
        ("Answer in JSON with keys can_cancel and status_required for order {order}.", "{{\"can_cancel\": true, \"status_required\": \"pending\"}}", {"json_schema": {"type": "object", "required": ["can_cancel", "status_required"]}}),
    ],
    "registration": [
        ("How do I create an account?", "Click 'Sign up' on the website, enter your e-mail and a password, and confirm the link we send you.", {"must_include_any": ["sign up", "Sign up", "e-mail", "email"]}),
        ("I never received the confirmation e-mail after registering.", "Please check your spam folder; if it's not there, I can resend it once you tell me the e-mail you used.", {"must_include_any": ["spam"]}),
        ("Can I order without an account?", "I don't want to guess about guest checkout; orders I can help with are linked to an account.", {}),
        ("Can I register with my phone number instead of e-mail?", "Accounts are identified by e-mail address, so you need an e-mail to register.", {"max_words": 80}),
        ("I registered with a typo in my e-mail, {email}.", "I can help after verifying you with your name and zip code; then you can update the e-mail in Account settings.", {}),
        ("Is registration free?", "Yes, creating an account is free.", {"max_words": 40}),
    ],
}


def main() -> None:
    out = Path(__file__).parent / "items" / "support.jsonl"
    out.parent.mkdir(exist_ok=True)
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for intent, qs in Q.items():
            for qi, (q, ref, checks) in enumerate(qs):
                for ci, ctx in enumerate(CONTEXTS):
                    item = {
                        "id": f"support-{intent}-{qi:02d}-{ci}",
                        "category": intent,
                        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q.format(**ctx)}],
                        "reference": ref.format(**ctx),
                        "checks": {**checks, "max_words": checks.get("max_words", 200)},
                        "tags": ["support", "json" if "json_schema" in checks else "text", "tau2-retail"],
                    }
                    f.write(json.dumps(item, ensure_ascii=False) + "\n")
                    n += 1
    print(f"wrote {n} items to {out}")


if __name__ == "__main__":
    main()
