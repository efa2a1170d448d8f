// The smallest WDL worker: answers every request with a greeting and the path it saw.
export default {
  async fetch(request) {
    const url = new URL(request.url);
    return new Response(`Hello from WDL! You asked for ${url.pathname}\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  },
};
