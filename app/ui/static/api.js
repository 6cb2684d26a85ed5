// The API with the signed-in key: JSON requests, the error shape as ApiError, and a job's
// event stream read with fetch (an EventSource cannot send the Authorization header).

export class ApiError extends Error {
  constructor(status, code, message, details = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = (body && body.error) || {};
  const retry = Number(response.headers.get("Retry-After")) || null;
  return new ApiError(
    response.status,
    error.code || `http_${response.status}`,
    error.message || `The service answered ${response.status} ${response.statusText}.`,
    error.details || null,
    retry,
  );
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

export class Api {
  constructor(root, key, onUnauthorized = () => {}) {
    this.root = root;
    this.key = key;
    this.onUnauthorized = onUnauthorized;
  }

  url(path, query) {
    const url = new URL(this.root + path, window.location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    return url;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.key}`, ...extra };
  }

  async fetch(method, path, { json, form, query, signal, accept = "application/json" } = {}) {
    const headers = this.headers({ Accept: accept });
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form) {
      body = form; // multipart: the browser sets the boundary
    }
    let response;
    try {
      response = await fetch(this.url(path, query), { method, headers, body, signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "network_error", `The service did not answer (${error.message}).`);
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401) this.onUnauthorized(error);
      throw error;
    }
    return response;
  }

  async request(method, path, options = {}) {
    const response = await this.fetch(method, path, options);
    if (response.status === 204) return null;
    return response.json();
  }

  get(path, query, signal) {
    return this.request("GET", path, { query, signal });
  }

  post(path, json) {
    return this.request("POST", path, { json });
  }

  upload(path, form) {
    return this.request("POST", path, { form });
  }

  delete(path) {
    return this.request("DELETE", path);
  }

  async blob(path, query) {
    const response = await this.fetch("GET", path, { query, accept: "*/*" });
    return { status: response.status, response, blob: response.status === 200 ? await response.blob() : null };
  }

  // Read a job's events as they come; `onEvent({id, event, data})` for each. Reconnects with
  // Last-Event-ID when the connection drops, until `isOver()` says the job has ended (the
  // server closes a finished job's stream) or `signal` aborts.
  async stream(path, { query, onEvent, isOver, signal }) {
    let lastId = null;
    let delay = 1000;
    while (!signal.aborted) {
      try {
        const headers = this.headers({ Accept: "text/event-stream" });
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await fetch(this.url(path, query), { headers, signal });
        if (!response.ok) {
          const error = await errorOf(response);
          if (response.status !== 429 && response.status < 500) throw error;
          delay = (error.retryAfter || 2) * 1000;
        } else {
          delay = 1000;
          lastId = await readEvents(response.body, lastId, onEvent);
          if (isOver()) return;
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError) throw error;
      }
      await sleep(delay, signal);
    }
  }
}

async function readEvents(body, lastId, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return lastId;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = parseBlock(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      if (!event) continue;
      if (event.id !== null) lastId = event.id;
      onEvent(event);
    }
  }
}

function parseBlock(block) {
  let id = null;
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a comment: the keep-alive ping
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") id = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  return { id, event, data: JSON.parse(data.join("\n")) };
}
