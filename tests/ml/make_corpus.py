#!/usr/bin/env python3
"""tests/ml/make_corpus.py — writes the small labeled corpus the model tests use.

    python3 tests/ml/make_corpus.py tests/ml

Generated, not collected: short support-ticket sentences of three labels
(billing, shipping, technical) assembled from the phrases below with a seeded
generator, so the same files come out every time. Some rows use accents,
German, Cyrillic and Greek so that the tokenizer's Unicode handling is on the
path. Writes tickets.jsonl (300 rows) and tickets.csv (the same rows, RFC 4180
quoting: every text holds a comma and some a quote).
"""
import csv
import json
import random
import sys

PHRASES = {
    "billing": [
        "I was charged twice for my invoice", "the refund has not arrived on my card",
        "please cancel the subscription and stop the payment", "why is my bill higher this month",
        "the VAT on the invoice is wrong", "my credit card payment was declined",
        "I need a receipt for the last payment", "Rechnung doppelt bezahlt, bitte Gutschrift",
        "remboursement de la facture en attente", "списали деньги дважды за счёт",
    ],
    "shipping": [
        "my parcel has not been delivered yet", "the tracking number shows no movement",
        "the package arrived damaged and the box was open", "can you change the delivery address",
        "the courier left the parcel at the wrong door", "when will my order be shipped",
        "the delivery is three days late", "Paket ist nicht angekommen, Sendungsnummer fehlt",
        "colis livré à la mauvaise adresse", "το δέμα δεν παραδόθηκε ακόμα",
    ],
    "technical": [
        "the app crashes when I open settings", "I cannot log in after the update",
        "the password reset email never comes", "error 500 when I upload a file",
        "the page is blank in my browser", "sync fails with a timeout message",
        "the printer driver does not install", "App stürzt beim Start ab, Fehlermeldung",
        "l'application plante après la mise à jour", "приложение не запускается после обновления",
    ],
}
FILLERS = ["hello,", "hi team,", "urgent:", "please help,", "thanks,", "again,", "since monday,", "FYI,"]
ENDINGS = ["", " thanks", " regards", " asap", " \"please\" reply", " order 12345", " ticket 987"]


def main(out):
    rng = random.Random(20261204)
    rows = []
    for label in sorted(PHRASES):
        for _ in range(100):
            a, b = rng.sample(PHRASES[label], 2)
            text = f"{rng.choice(FILLERS)} {a}{rng.choice(ENDINGS)}"
            if rng.random() < 0.3:
                text += f". also {b}"
            rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    with open(f"{out}/tickets.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(f"{out}/tickets.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(["id", "label", "text"])
        for i, r in enumerate(rows):
            w.writerow([i + 1, r["label"], r["text"]])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/ml")
