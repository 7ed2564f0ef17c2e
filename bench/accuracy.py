"""Accuracy harness: what the live service reads, against ground truth, beside the plain engines.

    python -m bench.accuracy [DIR] [--url URL | --config CFG] [--only TEXT] [--out DIR]

DIR is in the ../shared/evaldata layout: ``<name>.<png|jpg|pdf>`` next to ``<name>.gt.txt`` (and a
``manifest.jsonl`` with ``id``, ``source``, ``image``, ``lang`` when present). In one run, each page
is read by the service over HTTP (started with ``serve run`` unless ``--url``), by bare RapidOCR on
the whole page (no layout) and by Debian's tesseract CLI with the page's language packs.

Metrics (bench/textmetrics.py): CER and WER after NFKC and whitespace folding (case-folded when the
ground truth has no lower-case letters, as SROIE's), and the line order error (the share of matched
lines out of reading order). Output: results.json, report.md, cer_by_source.png, and for every page
worse than the better bare engine, crops of its worst regions (``crops/<page>/``, see
``worst_regions``) with an index in report.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bare import bare_rapidocr
from bench.report import figure
from bench.systems import REQUEST_TIMEOUT_S, ROOT, Service
from bench.textmetrics import cer, order_error, wer
from serve_app.client import Client

DEFAULT_DIR = ROOT.parent / "shared" / "evaldata"
SYSTEMS = ("service", "rapidocr", "tesseract")
# ISO 639-1 -> tesseract language pack
TESSERACT_LANGS = {"en": "eng", "ru": "rus", "de": "deu", "fr": "fra", "nl": "nld", "pl": "pol", "ms": "msa",
                   "zh": "chi_sim"}  # fmt: skip
WORSE_MARGIN = 0.03
WORST_REGIONS = 5  # crops saved per page that is worse than the better bare engine


@dataclass(frozen=True)
class Doc:
    id: str
    source: str
    path: Path
    truth: str
    langs: tuple[str, ...]


def documents(folder: Path, only: str = "") -> list[Doc]:
    manifest = folder / "manifest.jsonl"
    docs = []
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            entry = json.loads(line)
            path = folder / entry["image"]
            truth = path.with_name(path.name.rsplit(".", 1)[0] + ".gt.txt")
            docs.append(
                Doc(entry["id"], entry["source"], path, truth.read_text(), tuple(entry.get("lang", [])))
            )
    else:
        for truth in sorted(folder.rglob("*.gt.txt")):
            stem = truth.name.removesuffix(".gt.txt")
            found = [
                p
                for p in truth.parent.glob(stem + ".*")
                if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".pdf")
            ]
            if found:
                name = str(found[0].relative_to(folder).with_suffix(""))
                text = truth.read_text()
                docs.append(Doc(name, found[0].parent.name, found[0], text, scripts(text)))
    return [d for d in docs if only in d.id]


def scripts(text: str) -> tuple[str, ...]:
    """Languages to give tesseract when no manifest says: from the scripts of the ground truth."""
    langs = ["ru"] if any("\u0400" <= c <= "\u04ff" for c in text) else []
    langs += ["zh"] if any("\u4e00" <= c <= "\u9fff" for c in text) else []
    return (*langs, "en")


def page_png(path: Path) -> bytes:
    """The first page as PNG: PDFs rendered at 200 DPI (the service's default), images as they are."""
    if path.suffix.lower() != ".pdf":
        return path.read_bytes()
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(path.read_bytes())
    try:
        buf = io.BytesIO()
        pdf[0].render(scale=200 / 72).to_pil().convert("RGB").save(buf, format="PNG")
        return buf.getvalue()
    finally:
        pdf.close()


class Readers:
    """The three readers of one run."""

    def __init__(self, service_url: str, installed_langs: set[str]) -> None:
        self._service = Client(service_url, timeout_s=REQUEST_TIMEOUT_S)
        self._rapid = bare_rapidocr()
        self._langs = installed_langs

    def service(self, doc: Doc) -> str:
        body = self._service.ocr(doc.path, pages="1")
        self.last_page: dict[str, Any] = body["pages"][0]
        return str(body["text"])

    def rapidocr(self, doc: Doc) -> str:
        import numpy as np
        from PIL import Image

        image = np.asarray(Image.open(io.BytesIO(page_png(doc.path))).convert("RGB"))
        result, _ = self._rapid(image)
        return "\n".join(line[1] for line in result or [])

    def tesseract_langs(self, doc: Doc) -> str:
        packs = [TESSERACT_LANGS[code] for code in doc.langs if TESSERACT_LANGS.get(code) in self._langs]
        return "+".join(dict.fromkeys(packs)) or "eng"

    def tesseract(self, doc: Doc) -> str:
        done = subprocess.run(
            ["tesseract", "-", "-", "-l", self.tesseract_langs(doc)], input=page_png(doc.path),
            capture_output=True, timeout=REQUEST_TIMEOUT_S, env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )  # fmt: skip
        return done.stdout.decode("utf-8", "replace")


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold()) if len(w) > 1]


def worst_regions(page: dict[str, Any], truth: str, k: int = WORST_REGIONS) -> list[dict[str, Any]]:
    """The ``k`` blocks whose words the ground truth has least of (ground truth is per page, not
    per region: a block read wrongly is one whose words are not on the page), worst first."""
    known = set(_words(truth))
    scored = []
    for block in page["blocks"]:
        words = _words(block["text"])
        if words:
            miss = sum(w not in known for w in words) / len(words)
            scored.append({**block, "word_miss": round(miss, 3), "words": len(words)})
    scored.sort(key=lambda b: (b["word_miss"], b["words"]), reverse=True)
    return [b for b in scored[:k] if b["word_miss"] > 0]


def save_crops(doc: Doc, regions: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(page_png(doc.path))).convert("RGB")
    saved = []
    for block in regions:
        x0, y0, x1, y1 = (int(v) for v in block["bbox"])
        name = f"{block['order']:03d}-{block['label']}.png"
        image.crop((x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))).save(folder / name)
        saved.append({**block, "crop": str(folder.name + "/" + name)})
    return saved


def score(text: str, truth: str) -> dict[str, float]:
    casefold = any(c.isalpha() for c in truth) and not any(c.islower() for c in truth)
    return {
        "cer": round(cer(text, truth, casefold), 4),
        "wer": round(wer(text, truth, casefold), 4),
        "order_error": round(order_error(text, truth, casefold), 4),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def means(subset: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"pages": len(subset)}
        for system in SYSTEMS:
            for metric in ("cer", "wer", "order_error"):
                out[f"{system}_{metric}"] = round(statistics.fmean(r[system][metric] for r in subset), 4)
        out["better_bare_cer"] = round(statistics.fmean(r["better_bare_cer"] for r in subset), 4)
        out["worse_pages"] = sum(r["worse"] for r in subset)
        return out

    sources = sorted({r["source"] for r in rows})
    return {
        "overall": means(rows),
        "by_source": {s: means([r for r in rows if r["source"] == s]) for s in sources},
        "targets": {
            "service mean CER < mean of the per-page better bare engine": means(rows)["service_cer"]
            < means(rows)["better_bare_cer"],
            f"no page worse than the better bare engine + {WORSE_MARGIN}": means(rows)["worse_pages"] == 0,
        },
    }


def run(opts: argparse.Namespace) -> Path:
    docs = documents(opts.dir, opts.only)
    if not docs:
        raise SystemExit(f"no documents with ground truth under {opts.dir}")
    if shutil.which("tesseract") is None:
        raise SystemExit("the tesseract CLI is missing (apt-get install tesseract-ocr)")
    langs = set(
        subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True).stdout.split()[1:]
    )
    service = Service(opts.config, opts.url)
    service.start()
    started = time.strftime("%Y%m%d-%H%M%S")
    out = opts.out or ROOT / "bench" / "results" / f"accuracy-{started}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        readers = Readers(service.url, langs)
        rows = []
        for i, doc in enumerate(docs, 1):
            row: dict[str, Any] = {"id": doc.id, "source": doc.source}
            for system in SYSTEMS:
                t = time.perf_counter()
                text = getattr(readers, system)(doc)
                row[system] = {**score(text, doc.truth), "seconds": round(time.perf_counter() - t, 2)}
            row["tesseract"]["langs"] = readers.tesseract_langs(doc)
            row["better_bare_cer"] = min(row["rapidocr"]["cer"], row["tesseract"]["cer"])
            row["worse"] = row["service"]["cer"] > row["better_bare_cer"] + WORSE_MARGIN
            if row["worse"]:
                worst = worst_regions(readers.last_page, doc.truth)
                row["worst_regions"] = save_crops(doc, worst, out / "crops" / doc.id.replace("/", "__"))
            rows.append(row)
            print(f"[{i}/{len(docs)}] {doc.id}: service {row['service']['cer']:.3f}  rapidocr "
                  f"{row['rapidocr']['cer']:.3f}  tesseract {row['tesseract']['cer']:.3f}"
                  + ("  WORSE" if row["worse"] else ""), flush=True)  # fmt: skip
    finally:
        service.stop()
    results = {"started": started, "dir": str(opts.dir), "pages": rows, **summarize(rows)}
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    write_report(results, out)
    print(f"results: {out / 'results.json'}\nreport:  {out / 'report.md'}")
    return out


def write_report(results: dict[str, Any], out: Path) -> None:
    o = results["overall"]
    lines = [
        f"# Accuracy {results['started']} ({o['pages']} pages of `{results['dir']}`)",
        "",
        "| | service | bare RapidOCR | bare tesseract | better bare (per page, hindsight) |",
        "|---|---|---|---|---|",
        f"| mean CER | **{o['service_cer']}** | {o['rapidocr_cer']} | {o['tesseract_cer']} | "
        f"{o['better_bare_cer']} |",
        f"| mean WER | {o['service_wer']} | {o['rapidocr_wer']} | {o['tesseract_wer']} | |",
        f"| mean line order error | {o['service_order_error']} | {o['rapidocr_order_error']} | "
        f"{o['tesseract_order_error']} | |",
        "",
        f"Pages worse than the better bare engine + {WORSE_MARGIN}: {o['worse_pages']}.",
        "",
        *(f"- {k}: {'met' if v else 'NOT met'}" for k, v in results["targets"].items()),
        "",
        "| source | pages | service CER | RapidOCR CER | tesseract CER | better bare | worse pages |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {s} | {m['pages']} | {m['service_cer']} | {m['rapidocr_cer']} | {m['tesseract_cer']} | "
            f"{m['better_bare_cer']} | {m['worse_pages']} |"
            for s, m in results["by_source"].items()
        ),
        "",
        "| page | service CER | order err | RapidOCR CER | tesseract CER (langs) | service s |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['id'][:60]} | {r['service']['cer']}{' (worse)' if r['worse'] else ''} | "
            f"{r['service']['order_error']} | {r['rapidocr']['cer']} | {r['tesseract']['cer']} "
            f"({r['tesseract']['langs']}) | {r['service']['seconds']} |"
            for r in results["pages"]
        ),
        "",
        "![CER by source](cer_by_source.png)",
        "",
        "## Worst regions of the pages worse than the better bare engine",
        "",
        "Ranked by the share of a block's words that the page's ground truth does not have.",
        "",
        "| page | crop | label | engine (confidence) | words missing from the truth | read as |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['id'][:40]} | [{b['crop']}](crops/{b['crop']}) | {b['label']} | {b['engine']} "
            f"({b['confidence']}) | {b['word_miss']} of {b['words']} | "
            f"{' '.join(b['text'].split())[:80].replace('|', '/')} |"
            for r in results["pages"]
            for b in r.get("worst_regions", [])
        ),
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    _plot(results, out / "cer_by_source.png")


def _plot(results: dict[str, Any], path: Path) -> None:
    sources = list(results["by_source"])
    with figure(path, width=max(6, 1.1 * len(sources))) as ax:
        width = 0.8 / len(SYSTEMS)
        for i, system in enumerate(SYSTEMS):
            values = [results["by_source"][s][f"{system}_cer"] for s in sources]
            ax.bar([x + i * width for x in range(len(sources))], values, width, label=system)
        ax.set_xticks([x + width for x in range(len(sources))], sources, rotation=30, ha="right")
        ax.set(ylabel="mean CER (lower is better)", title="CER by source")


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    p.add_argument("--url", help="a service already running at this 127.0.0.1 URL")
    p.add_argument("--config", type=Path, default=ROOT / "serve_config.cpu.yaml")
    p.add_argument("--only", default="", help="only documents whose id contains this")
    p.add_argument("--out", type=Path)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
