// The web page of serve_app: read a document (now or as a job), see its blocks over the page,
// follow jobs, chat with the loaded VLM, watch health. Plain DOM, no dependencies; every text that
// comes from a document or the service is set as textContent, never parsed as HTML.
"use strict";

const TEXT = {
  en: {
    "tab.read": "Read", "tab.jobs": "Jobs", "tab.chat": "Chat", "tab.health": "Health",
    key: "API key", "key.none": "none needed", api: "API",
    drop: "Drop a PDF or an image here, or click to choose one",
    "opt.pages": "Pages", "opt.lang": "Language", "lang.auto": "auto", "opt.layout": "Layout",
    "opt.text_layer": "PDF text layer", "tl.auto": "where it can be trusted", "tl.off": "off: OCR every page",
    "tl.only": "only: never OCR", "opt.job": "As a background job", "opt.model": "Model", go: "Read", busy: "Reading…",
    "block.hint": "Point at a block to see its text",
    "view.md": "Markdown", "view.raw": "Markdown source", "view.text": "Text",
    copy: "Copy", copied: "Copied", download: "Download",
    "jobs.hint": "Jobs you submitted from this browser. Submit one from Read with “As a background job”.",
    "jobs.doc": "Document", "jobs.status": "Status", "jobs.progress": "Progress", "jobs.none": "No jobs yet.",
    cancel: "Cancel", open: "Open", forget: "Forget",
    "job.queued": "queued", "job.running": "running", "job.succeeded": "done", "job.failed": "failed",
    "job.cancelled": "cancelled", "job.gone": "expired",
    "chat.hint": "Ask the loaded VLM about an image or the page on screen.", "chat.image": "Image",
    "chat.use_page": "the page on screen (the last one pointed at)", "chat.prompt": "What is written in the table?",
    "chat.send": "Ask", "chat.noimage": "Choose an image, or tick the page of the last result.",
    "err.nofile": "Choose a document first.", "err.key": "This service needs an API key: enter it above.",
    "err.network": "The service did not answer", "err.retry": "retry in {s} s",
    "err.answer": "The service's answer could not be read", "err.cut": "The answer stopped before its end",
    "err.copy": "This browser did not let the page copy; select the text instead",
    pages: "pages", page: "page", flagged: "flagged", engine: "engine", confidence: "confidence",
    source: "source", "h.status": "Status", "h.deployments": "Deployments", "h.replicas": "Replicas",
    "h.models": "Models", "h.storage": "Storage", "h.version": "Version", "h.name": "Name",
    "h.model": "Model", "h.detail": "Detail", "h.keyed": "Enter an API key above to see deployments and models.", "st.ready": "ready", "st.loading": "loading models",
    "st.starting": "starting", "st.degraded": "degraded", "st.down": "not answering",
    "st.unauthorized": "key not accepted",
  },
  ru: {
    "tab.read": "Распознать", "tab.jobs": "Задания", "tab.chat": "Чат", "tab.health": "Состояние",
    key: "API-ключ", "key.none": "не нужен", api: "API",
    drop: "Перетащите сюда PDF или изображение или нажмите, чтобы выбрать файл",
    "opt.pages": "Страницы", "opt.lang": "Язык", "lang.auto": "авто", "opt.layout": "Разметка",
    "opt.text_layer": "Текстовый слой PDF", "tl.auto": "где ему можно верить", "tl.off": "нет: OCR всех страниц",
    "tl.only": "только он: без OCR", "opt.job": "Фоновым заданием", "opt.model": "Модель", go: "Распознать", busy: "Распознаём…",
    "block.hint": "Наведите на блок, чтобы увидеть его текст",
    "view.md": "Markdown", "view.raw": "Исходный Markdown", "view.text": "Текст",
    copy: "Копировать", copied: "Скопировано", download: "Скачать",
    "jobs.hint": "Задания, отправленные из этого браузера. Отправьте документ из «Распознать» с флажком «Фоновым заданием».",
    "jobs.doc": "Документ", "jobs.status": "Статус", "jobs.progress": "Ход", "jobs.none": "Заданий пока нет.",
    cancel: "Отменить", open: "Открыть", forget: "Убрать",
    "job.queued": "в очереди", "job.running": "идёт", "job.succeeded": "готово", "job.failed": "ошибка",
    "job.cancelled": "отменено", "job.gone": "удалено по сроку",
    "chat.hint": "Спросите загруженную VLM об изображении или о странице на экране.", "chat.image": "Изображение",
    "chat.use_page": "страница на экране (последняя, на которую наводили)", "chat.prompt": "Что написано в таблице?",
    "chat.send": "Спросить", "chat.noimage": "Выберите изображение или отметьте страницу последнего результата.",
    "err.nofile": "Сначала выберите документ.", "err.key": "Сервису нужен API-ключ: введите его вверху.",
    "err.network": "Сервис не ответил", "err.retry": "повторите через {s} с",
    "err.answer": "Ответ сервиса не удалось прочитать", "err.cut": "Ответ оборвался",
    "err.copy": "Браузер не дал странице скопировать текст; выделите его вручную",
    pages: "стр.", page: "стр.", flagged: "помечен", engine: "движок", confidence: "уверенность",
    source: "источник", "h.status": "Статус", "h.deployments": "Развёртывания", "h.replicas": "Реплики",
    "h.models": "Модели", "h.storage": "Хранилище", "h.version": "Версия", "h.name": "Имя",
    "h.model": "Модель", "h.detail": "Подробности", "h.keyed": "Введите API-ключ вверху, чтобы увидеть развёртывания и модели.", "st.ready": "готов", "st.loading": "загружает модели",
    "st.starting": "запускается", "st.degraded": "работает не полностью", "st.down": "не отвечает",
    "st.unauthorized": "ключ не принят",
  },
};

const $ = (selector) => document.querySelector(selector);
const FINAL = new Set(["succeeded", "failed", "cancelled", "gone"]);
const LABEL_COLORS = new Map(Object.entries({
  text: "#1f77b4", title: "#d62728", table: "#2ca02c", figure: "#9467bd", chart: "#8c564b",
  header: "#7f7f7f", footer: "#7f7f7f", reference: "#17becf", equation: "#e377c2",
  figure_caption: "#bcbd22", table_caption: "#ff7f0e",
}));

// localStorage, or nothing where the browser refuses it (the page still works, forgetting).
const remembered = {
  get(name) {
    try { return localStorage.getItem("serve_app." + name); } catch { return null; }
  },
  set(name, value) {
    try { localStorage.setItem("serve_app." + name, value); } catch { /* not kept */ }
  },
};

let lang = remembered.get("lang") || (navigator.language.startsWith("ru") ? "ru" : "en");
let shown = null; // the result on screen: {body, name, images, page (index pointed at last)}
let view = "md";
let chatModel = null;

const t = (key, vars = {}) =>
  (TEXT[lang][key] ?? TEXT.en[key] ?? key).replace(/\{(\w+)\}/g, (_, name) => vars[name]);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "style") node.style.cssText = value; // through the CSSOM: allowed by the page's CSP
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "style") node.style.cssText = value;
    else node.setAttribute(name, value);
  }
  return node;
}

// ---- talking to the service --------------------------------------------------------------

function authHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
  } catch (err) {
    throw Object.assign(new Error(err.message), { title: t("err.network"), detail: err.message });
  }
  if (!response.ok) throw await problem(response);
  return response;
}

async function json(path, init) {
  const response = await api(path, init);
  try {
    return await response.json();
  } catch (err) {
    throw Object.assign(new Error(err.message), { title: t("err.answer"), detail: err.message });
  }
}

// A non-2xx answer as an Error carrying its problem+json (title, detail, status, Retry-After).
async function problem(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = { detail: response.statusText };
  }
  const err = new Error(body.detail || response.statusText);
  return Object.assign(err, {
    status: response.status,
    title: body.title || response.statusText,
    detail: body.detail || "",
    retryAfter: response.headers.get("Retry-After"),
  });
}

// A problem as two lines: its status and title, then the service's own sentence and what to do.
function showError(box, err) {
  const detail = [err.detail || (err.title ? "" : err.message)];
  if (err.status === 401) detail.push(t("err.key"));
  if (err.retryAfter) detail.push(t("err.retry", { s: err.retryAfter }));
  box.replaceChildren(
    el("strong", {}, err.status ? `${err.status} ${err.title}` : err.title || t("err.network")),
    el("div", {}, detail.filter(Boolean).join(" ")),
  );
  box.hidden = false;
}

// ---- reading a document -------------------------------------------------------------------

function documentForm(form, file) {
  const data = new FormData();
  data.append("file", file);
  const pages = form.pages.value.trim();
  if (pages) data.append("pages", pages);
  data.append("lang", form.lang.value);
  data.append("layout", form.layout.checked ? "true" : "false");
  data.append("text_layer", form.text_layer.value);
  if (form.model.value) data.append("model", form.model.value);
  return data;
}

async function onRead(event) {
  event.preventDefault();
  const form = event.target;
  const file = $("#file").files[0];
  $("#error").hidden = true;
  if (!file) return showError($("#error"), { title: t("err.nofile") });
  const data = documentForm(form, file);
  $("#read-go").disabled = true;
  try {
    if (form.as_job.checked) {
      const job = await json("v1/jobs", { method: "POST", body: data });
      rememberJob(job, file.name);
      switchTab("jobs");
    } else {
      $("#busy").hidden = false;
      data.append("page_images", "true");
      const body = await json("v1/ocr", { method: "POST", body: data });
      showResult(body, file.name, body.pages.map((p) => p.image_data));
    }
  } catch (err) {
    showError($("#error"), err);
  } finally {
    $("#busy").hidden = true;
    $("#read-go").disabled = false;
  }
}

function color(label) {
  if (LABEL_COLORS.has(label)) return LABEL_COLORS.get(label);
  let hash = 0;
  for (const ch of label) hash = (hash * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${hash}, 65%, 45%)`;
}

// The answer without the page images it carried for drawing (they are not the result).
function withoutImages(body) {
  return { ...body, pages: body.pages.map(({ image_data, ...page }) => page) };
}

function showResult(body, name, images) {
  if (shown && shown.images !== images) shown.images.forEach((url) => url && url.startsWith("blob:") && URL.revokeObjectURL(url));
  shown = { body: withoutImages(body), name, images, page: 0 };
  $("#error").hidden = true;
  $("#result").hidden = false;
  $("#result-name").textContent = name;
  const total = body.timings_ms && body.timings_ms.total;
  $("#result-meta").textContent =
    `${body.pages.length} ${t(body.pages.length === 1 ? "page" : "pages")}` + (total ? ` · ${(total / 1000).toFixed(1)} s` : "") +
    ` · ${Object.values(body.models || {}).join(", ")}`;
  const labels = [...new Set(body.pages.flatMap((p) => p.blocks.map((b) => b.label)))];
  $("#legend").replaceChildren(
    ...labels.map((label) => el("span", { class: "tag", style: `--c: ${color(label)}` }, label)),
  );
  $("#pages").replaceChildren(...body.pages.map((page, i) => pageFigure(page, images[i], i)));
  $("#block").textContent = t("block.hint");
  $("#block").className = "block-detail muted";
  renderView();
}

// A page: its image with each block as a box coloured by label (flagged ones dashed); the larger
// boxes drawn first, so that a small one inside a large one (a caption in a figure) can be pointed at.
function pageFigure(page, image, index) {
  const picture = svg("svg", {
    viewBox: `0 0 ${page.width} ${page.height}`, class: "page", role: "img",
    "aria-label": `${t("page")} ${page.page}`,
  });
  picture.append(svg("rect", { width: page.width, height: page.height, class: "paper" }));
  if (image) picture.append(svg("image", { href: image, width: page.width, height: page.height }));
  const area = (b) => (b.bbox[2] - b.bbox[0]) * (b.bbox[3] - b.bbox[1]);
  for (const block of [...page.blocks].sort((a, b) => area(b) - area(a))) {
    const [x0, y0, x1, y1] = block.bbox;
    const box = svg("rect", {
      x: x0, y: y0, width: Math.max(x1 - x0, 1), height: Math.max(y1 - y0, 1),
      class: "box" + (block.error ? " flagged" : ""), style: `--c: ${color(block.label)}`,
      "data-label": block.label, tabindex: 0,
    });
    const title = svg("title");
    title.textContent = block.label + (block.error ? ` (${block.error})` : "");
    box.append(title);
    const show = () => {
      shown.page = index;
      showBlock(page, block, box);
    };
    box.addEventListener("mouseenter", show);
    box.addEventListener("focus", show);
    box.addEventListener("click", show);
    picture.append(box);
  }
  return el("figure", {}, picture, el("figcaption", {}, `${t("page")} ${page.page}`));
}

function showBlock(page, block, box) {
  document.querySelectorAll(".box.selected").forEach((b) => b.classList.remove("selected"));
  box.classList.add("selected");
  const facts = [
    `${t("page")} ${page.page} · #${block.order}`,
    `${t("engine")}: ${block.engine}`,
    `${t("confidence")}: ${Number(block.confidence).toFixed(2)}`,
    `${t("source")}: ${block.source}`,
  ];
  $("#block").className = "block-detail";
  $("#block").replaceChildren(
    ...[el("div", {}, el("span", { class: "tag", style: `--c: ${color(block.label)}` }, block.label), " ",
      el("span", { class: "muted" }, facts.join(" · "))),
    block.error ? el("div", { class: "flag" }, `${t("flagged")}: ${block.error}`) : null,
    el("pre", { class: "block-text" }, block.text)].filter(Boolean),
  );
}

function viewText() {
  const body = shown.body;
  if (view === "json") return JSON.stringify(body, null, 2);
  return view === "text" ? body.text : body.markdown;
}

function renderView() {
  document.querySelectorAll(".views [data-view]").forEach((b) =>
    b.classList.toggle("active", b.dataset.view === view));
  const box = $("#view");
  if (!shown) return box.replaceChildren();
  box.replaceChildren(view === "md" ? renderMarkdown(shown.body.markdown) : el("pre", {}, viewText()));
}

// The Markdown the service writes (headings, paragraphs, captions, fenced text, $$ formulas,
// HTML tables from a VLM, figure placeholders, page breaks), drawn with DOM nodes only.
function renderMarkdown(markdown) {
  const out = el("div", { class: "markdown" });
  const lines = markdown.split("\n");
  let paragraph = [];
  const flush = () => {
    if (!paragraph.length) return;
    const text = paragraph.join("\n");
    const caption = /^\*[^*].*\*$/s.test(text);
    // A line break inside a paragraph is a soft one, as in any Markdown renderer: a space.
    out.append(el("p", caption ? { class: "caption" } : {}, (caption ? text.slice(1, -1) : text).replace(/\n/g, " ")));
    paragraph = [];
  };
  const until = (i, end) => {
    let j = i + 1;
    while (j < lines.length && !end(lines[j])) j++;
    return j;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```") || line.trim() === "$$") {
      flush();
      const fence = line.startsWith("```") ? "```" : "$$";
      const j = until(i, (l) => l.trim().startsWith(fence));
      out.append(el("pre", { class: fence === "$$" ? "formula" : "" }, lines.slice(i + 1, j).join("\n")));
      i = j;
    } else if (line.trimStart().startsWith("<table")) {
      flush();
      // To its end, or to a blank line: a table cut off (a flagged answer) does not swallow the rest.
      const j = line.includes("</table>") ? i : until(i, (l) => l.includes("</table>") || !l.trim());
      out.append(safeTable(lines.slice(i, j + 1).join("\n")));
      i = j;
    } else if (/^#{1,6} /.test(line)) {
      flush();
      const level = Math.min(line.indexOf(" "), 6);
      out.append(el("h" + Math.max(level, 2), {}, line.slice(level + 1)));
    } else if (line.trim() === "---") {
      flush();
      out.append(el("hr"));
    } else if (/^!\[[^\]]*\]\([^)]*\)$/.test(line.trim())) {
      flush();
      out.append(el("p", { class: "figure" }, "🖼 " + line.trim().slice(2, line.trim().indexOf("]"))));
    } else if (!line.trim()) {
      flush();
    } else {
      paragraph.push(line);
    }
  }
  flush();
  return out;
}

// A VLM's HTML table rebuilt from its cells' text (and spans), without parsing it as HTML: no
// element of the model's is ever created, so none can load, run or style anything.
function safeTable(html) {
  const table = el("table");
  let row = null;
  let cell = null;
  let text = "";
  const close = () => {
    if (cell) cell.textContent = htmlText(text).trim();
    cell = null;
    text = "";
  };
  const markup = html.replace(/<(script|style)\b[\s\S]*?(<\/\1\s*>|$)/gi, "");
  for (const part of markup.split(/(<\/?(?:tr|td|th)\b[^>]*>)/i)) {
    const tag = /^<(\/?)(tr|td|th)\b([^>]*)>$/i.exec(part);
    if (!tag) {
      if (cell) text += part;
      continue;
    }
    const [, end, name, attrs] = tag;
    close();
    if (name.toLowerCase() === "tr") {
      row = end ? null : table.insertRow();
    } else if (!end) {
      row = row || table.insertRow();
      cell = el(name.toLowerCase());
      for (const span of ["colspan", "rowspan"]) {
        const n = Number((new RegExp(span + "\\s*=\\s*[\"']?(\\d+)", "i").exec(attrs) || [])[1]);
        if (n > 1 && n < 1000) cell.setAttribute(span, String(n));
      }
      row.append(cell);
    }
  }
  close();
  return table;
}

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

// An HTML fragment's text: tags dropped, character references decoded.
function htmlText(fragment) {
  return fragment.replace(/<[^>]*>/g, "").replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, ref) => {
    if (ref[0] !== "#") return ENTITIES[ref.toLowerCase()] ?? whole;
    const code = ref[1].toLowerCase() === "x" ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
    return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : whole;
  });
}

// The clipboard API exists on https and localhost only; elsewhere (a cluster over plain http) the
// text is copied through a selection.
async function onCopy() {
  if (!shown) return;
  try {
    if (navigator.clipboard) {
      await navigator.clipboard.writeText(viewText());
    } else {
      const area = el("textarea", { class: "offscreen" }, viewText());
      document.body.append(area);
      area.select();
      const copied = document.execCommand("copy");
      area.remove();
      if (!copied) throw new Error("copy refused");
    }
  } catch {
    return showError($("#error"), { title: t("err.copy") });
  }
  const button = $("#copy");
  button.textContent = t("copied");
  setTimeout(() => (button.textContent = t("copy")), 1200);
}

function onDownload() {
  if (!shown) return;
  const [suffix, type] = { json: [".json", "application/json"], text: [".txt", "text/plain"] }[view] ||
    [".md", "text/markdown"];
  const stem = shown.name.replace(/\.[^.]+$/, "") || "result";
  const link = el("a", {
    href: URL.createObjectURL(new Blob([viewText()], { type: type + ";charset=utf-8" })),
    download: stem + suffix,
  });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// ---- jobs ---------------------------------------------------------------------------------

function storedJobs() {
  try {
    return JSON.parse(remembered.get("jobs") || "[]");
  } catch {
    return [];
  }
}

function saveJobs(jobs) {
  remembered.set("jobs", JSON.stringify(jobs.slice(0, 50)));
  renderJobs();
}

function rememberJob(job, name) {
  saveJobs([{ id: job.id, name, status: job.status, progress: job.progress, self: job.links.self,
    result: job.links.result }, ...storedJobs()]);
}

function updateJob(id, changes) {
  const jobs = storedJobs();
  const updated = jobs.map((job) => (job.id === id ? { ...job, ...changes } : job));
  if (JSON.stringify(updated) !== JSON.stringify(jobs)) saveJobs(updated); // redrawn only on news
}

// The table follows the stored list; a row whose status is unchanged is updated in place (its
// buttons stay the same elements, so a press is never lost to a redraw).
function renderJobs() {
  const jobs = storedJobs();
  const body = $("#jobs tbody");
  if (!jobs.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted" }, t("jobs.none"))));
    return;
  }
  const rows = new Map([...body.querySelectorAll("tr[data-job]")].map((row) => [row.dataset.job, row]));
  const wanted = jobs.map((job) => {
    const row = rows.get(job.id);
    if (row && row.dataset.status === job.status && row.dataset.lang === lang) return fillRow(row, job);
    return fillRow(jobRow(job), job);
  });
  const same = wanted.length === body.children.length && wanted.every((row, i) => body.children[i] === row);
  if (!same) body.replaceChildren(...wanted);
}

function jobRow(job) {
  const actions = el("div", { class: "actions" });
  if (!FINAL.has(job.status)) actions.append(el("button", { onclick: () => cancelJob(job) }, t("cancel")));
  if (job.status === "succeeded") actions.append(el("button", { onclick: () => openJob(job) }, t("open")));
  actions.append(el("button", { class: "quiet", onclick: () => forgetJob(job) }, t("forget")));
  return el("tr", { "data-job": job.id, "data-status": job.status, "data-lang": lang },
    el("td", {}, job.name, el("div", { class: "muted small" }, job.id)),
    el("td", {}, t("job." + job.status), el("div", { class: "flag" })),
    el("td", {}, el("progress"), el("span", { class: "count" })),
    el("td", {}, actions));
}

function fillRow(row, job) {
  const done = job.progress ? job.progress.pages_done : 0;
  const total = job.progress ? job.progress.pages_total : 0;
  const bar = row.querySelector("progress");
  bar.max = Math.max(total, 1);
  bar.value = done;
  row.querySelector(".count").textContent = ` ${done}/${total}`;
  row.querySelector(".flag").textContent = job.problem || job.error || "";
  return row;
}

// Every unfinished job is asked after at once; the next round starts when this one has ended.
async function pollJobs() {
  const open = storedJobs().filter((j) => !FINAL.has(j.status));
  await Promise.all(open.map(pollJob));
  setTimeout(pollJobs, open.length ? 700 : 2000);
}

async function pollJob(job) {
  try {
    const now = await json(job.self);
    updateJob(job.id, {
      status: now.status, progress: now.progress, problem: undefined,
      error: now.error ? now.error.detail || now.error.title : undefined,
    });
  } catch (err) {
    // Gone (expired, or another key's), or a problem to show on its row until it clears.
    if (err.status === 404) updateJob(job.id, { status: "gone", problem: undefined });
    else updateJob(job.id, { problem: [err.status, err.title, err.detail].filter(Boolean).join(" ") });
  }
}

async function cancelJob(job) {
  $("#jobs-error").hidden = true;
  try {
    const now = await json(job.self, { method: "DELETE" });
    updateJob(job.id, { status: now.status, progress: now.progress });
  } catch (err) {
    showError($("#jobs-error"), err);
  }
}

// A job's pages come through the service (GET /v1/jobs/{id}/pages/{n}), with the key: S3's own
// URLs are often out of the browser's reach. Each becomes an object URL for the page's image.
async function openJob(job) {
  $("#jobs-error").hidden = true;
  try {
    const body = await json(job.result);
    const images = await Promise.all(body.pages.map(async (p) => {
      if (!p.image) return undefined;
      const response = await api(`${job.self}/pages/${p.page}`);
      return URL.createObjectURL(await response.blob());
    }));
    showResult(body, job.name, images);
    switchTab("read");
  } catch (err) {
    if (err.status === 404) updateJob(job.id, { status: "gone" });
    showError($("#jobs-error"), err);
  }
}

function forgetJob(job) {
  saveJobs(storedJobs().filter((j) => j.id !== job.id));
}

// ---- chat ---------------------------------------------------------------------------------

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// The image to ask about: the file chosen, or the page on screen (data: as answered, blob: as a
// job's page was fetched).
async function chatImage() {
  const file = $("#chat-file").files[0];
  if (file) return dataUrl(file);
  const page = $("#chat-page").checked && shown ? shown.images[shown.page] : null;
  if (!page) return null;
  return page.startsWith("data:") ? page : dataUrl(await (await fetch(page)).blob());
}

async function onChat(event) {
  event.preventDefault();
  $("#chat-error").hidden = true;
  const send = $("#chat-form button[type=submit]");
  send.disabled = true;
  let answer = null;
  try {
    const image = await chatImage();
    if (!image) return showError($("#chat-error"), { title: t("chat.noimage") });
    const prompt = $("#chat-prompt").value.trim() || t("chat.prompt");
    answer = el("div", { class: "answer" });
    $("#chat-log").prepend(el("div", { class: "turn" }, el("div", { class: "question" }, prompt), answer));
    const body = {
      model: chatModel, stream: true,
      messages: [{ role: "user", content: [{ type: "text", text: prompt }, { type: "image_url", image_url: { url: image } }] }],
    };
    const response = await api("v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const whole = await readEvents(response, (chunk) => {
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) answer.append(delta.content);
    });
    if (!whole) throw Object.assign(new Error(t("err.cut")), { title: t("err.cut") });
  } catch (err) {
    showError($("#chat-error"), err);
  } finally {
    if (answer) answer.dataset.done = "true";
    send.disabled = false;
  }
}

// OpenAI's server-sent events: `data: {...}` lines, blank-line separated, ended by `data: [DONE]`.
// True when that end came; false when the stream stopped before it.
async function readEvents(response, onChunk) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return true;
        const chunk = JSON.parse(data);
        if (chunk.error) throw Object.assign(new Error(chunk.error.message), { title: chunk.error.message });
        onChunk(chunk);
      }
    }
  }
}

async function findModels() {
  let models = { data: [] };
  try {
    models = await json("v1/models");
  } catch {
    // no key yet, or the service is down: no picker, no chat
  }
  const readers = models.data.filter((m) => m.role === "recognizer").map((m) => m.id);
  const select = $("#read-form").model;
  if ([...select.options].map((o) => o.value).join("\n") !== readers.join("\n")) {
    const chosen = select.value;
    select.replaceChildren(...readers.map((id) => el("option", { value: id }, id)));
    if (readers.includes(chosen)) select.value = chosen;
  }
  $("#model-pick").hidden = readers.length < 2; // one recognizer: nothing to choose
  const vlm = models.data.find((m) => m.deployment === "Recognizer" && String(m.name || "").startsWith("vllm:"));
  chatModel = vlm ? vlm.id : null;
  $('#tabs [data-tab="chat"]').hidden = !chatModel;
  document.body.dataset.chat = chatModel ? "on" : "off"; // settled: tests wait for it
}

// ---- health -------------------------------------------------------------------------------

let healthAsked = 0;

async function refreshHealth() {
  const asked = ++healthAsked;
  let health;
  try {
    health = await json("health");
  } catch (err) {
    const status = err.status === 401 ? "unauthorized" : "down";
    health = { status, reason: err.detail || err.title, deployments: {}, models: {} };
  }
  if (asked !== healthAsked) return; // a later answer is on its way, or already shown
  const pill = $("#status");
  pill.textContent = t("st." + health.status);
  pill.title = health.reason || "";
  pill.dataset.status = health.status;
  const head = (...names) => el("thead", {}, el("tr", {}, ...names.map((n) => el("th", {}, t(n)))));
  const deployments = Object.entries(health.deployments || {}).map(([name, d]) =>
    el("tr", {}, el("td", {}, name), el("td", {}, d.status),
      el("td", {}, Object.entries(d.replicas || {}).map(([s, n]) => `${s}: ${n}`).join(", ")),
      el("td", { class: "muted" }, d.message || "")));
  const models = Object.entries(health.models || {}).map(([name, info]) =>
    el("tr", {}, el("td", {}, name), el("td", {}, String(info.name || "")),
      el("td", { class: "muted" }, Object.entries(info).filter(([k]) => k !== "name")
        .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · "))));
  $("#health").replaceChildren(
    el("p", {}, el("strong", {}, `${t("h.status")}: `),
      el("span", { class: "pill", "data-status": health.status }, t("st." + health.status)),
      " ", el("span", { class: "muted" }, health.reason || "")),
    el("h3", {}, t("h.deployments")),
    el("table", {}, head("h.name", "h.status", "h.replicas", "h.detail"), el("tbody", {}, ...deployments)),
    el("h3", {}, t("h.models")),
    el("table", {}, head("h.name", "h.model", "h.detail"), el("tbody", {}, ...models)),
    el("p", {}, el("strong", {}, `${t("h.storage")}: `), String(health.storage || "—"),
      " · ", el("strong", {}, `${t("h.version")}: `), String(health.version || "—")),
    health.deployments ? null : el("p", { class: "muted" }, t("h.keyed")),
  );
}

// ---- the page around them -----------------------------------------------------------------

function switchTab(name) {
  document.querySelectorAll("#tabs [data-tab]").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll("main > .tab").forEach((s) => (s.hidden = s.id !== "tab-" + name));
  if (name === "health") refreshHealth();
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((node) => (node.textContent = t(node.dataset.i18n)));
  document.querySelectorAll("[data-i18n-placeholder]").forEach((node) =>
    (node.placeholder = t(node.dataset.i18nPlaceholder)));
  $("#lang").textContent = lang === "ru" ? "EN" : "RU";
  const file = $("#file").files[0];
  if (file) $("#drop-text").textContent = file.name;
  renderJobs();
  if (shown) showResult(shown.body, shown.name, shown.images);
  if (!$("#tab-health").hidden) refreshHealth();
}

function setUp() {
  $("#api-key").value = remembered.get("key") || "";
  $("#api-key").addEventListener("change", () => {
    remembered.set("key", $("#api-key").value.trim());
    findModels();
    refreshHealth();
  });
  $("#lang").addEventListener("click", () => {
    lang = lang === "ru" ? "en" : "ru";
    remembered.set("lang", lang);
    applyLanguage();
  });
  document.querySelectorAll("#tabs [data-tab]").forEach((b) => b.addEventListener("click", () => switchTab(b.dataset.tab)));
  document.querySelectorAll(".views [data-view]").forEach((b) =>
    b.addEventListener("click", () => { view = b.dataset.view; renderView(); }));
  $("#read-form").addEventListener("submit", onRead);
  $("#chat-form").addEventListener("submit", onChat);
  $("#copy").addEventListener("click", onCopy);
  $("#download").addEventListener("click", onDownload);
  const drop = $("#drop");
  $("#file").addEventListener("change", () => {
    const file = $("#file").files[0];
    $("#drop-text").textContent = file ? file.name : t("drop");
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) {
      $("#file").files = e.dataTransfer.files;
      $("#file").dispatchEvent(new Event("change"));
    }
  });
  applyLanguage();
  refreshHealth();
  findModels();
  pollJobs();
  setInterval(() => { refreshHealth(); findModels(); }, 5000); // a VLM loaded later shows its chat
}

document.addEventListener("DOMContentLoaded", setUp);
