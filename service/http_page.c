/*
 * The search page the gateway serves at GET / (service/http.c): one HTML
 * document with its style and script inline, nothing fetched from
 * elsewhere. The script posts the query to /v1/search (a text, or an image
 * chosen or dropped, sent as a data: URI), shows each hit with its rank,
 * score and path, and loads the hits' images from /v1/image (only the
 * index's own files are served there) with fetch(), so that an API key,
 * when the server wants one, goes with them too. A query in the address's
 * fragment (#q=TEXT) is run when the page loads.
 */
#include "service/svc_http.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char svc_http_page[] =
"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
"<title>vit search</title><style>"
"body{font-family:sans-serif;margin:1.5em;color:#1a1a1a;background:#fff}"
"h1{font-size:1.3em}form{display:flex;flex-wrap:wrap;gap:8px;"
"align-items:center}input[type=text]{flex:1 1 20em;padding:6px;"
"font-size:1em}button{padding:6px 12px;font-size:1em}"
"#drop{border:2px dashed #888;padding:10px 14px;border-radius:6px;"
"cursor:pointer}#drop.over{border-color:#05a;background:#eef4ff}"
":focus-visible{outline:3px solid #05a;outline-offset:2px}"
"#status{margin:1em 0;min-height:1.2em}#status.err{color:#a00}"
"#hits{display:flex;flex-wrap:wrap;gap:12px;list-style:none;padding:0}"
"#hits li{width:180px;border:1px solid #ccc;border-radius:4px;"
"padding:6px;background:#f7f7f7}"
"#hits button{display:block;width:100%;padding:0;border:0;"
"background:none;cursor:zoom-in}"
"#hits img{display:block;margin:0 auto;max-width:168px;max-height:168px;"
"min-width:96px;image-rendering:pixelated}"
".cap{font-size:12px;margin-top:4px;word-break:break-all}"
".score{font-weight:bold}dialog img{max-width:90vw;max-height:80vh;"
"min-width:256px;image-rendering:pixelated}"
"</style></head>\n<body>\n<h1>vit search</h1>\n"
"<form id=\"f\" role=\"search\">"
"<label for=\"q\">Text</label>"
"<input id=\"q\" type=\"text\" name=\"q\" autocomplete=\"off\" "
"placeholder=\"a photo of a bicycle\">"
"<label for=\"k\">Hits</label><input id=\"k\" type=\"number\" min=\"1\" "
"max=\"100\" value=\"12\" style=\"width:4em\">"
"<button type=\"submit\">Search</button>"
"<div id=\"drop\" role=\"button\" tabindex=\"0\" aria-describedby=\"dh\">"
"Drop an image here, or press to choose one</div>"
"<span id=\"dh\" hidden>searches for images like the one chosen</span>"
"<input id=\"file\" type=\"file\" accept=\"image/*\" hidden>"
"<label for=\"key\">API key</label><input id=\"key\" type=\"password\" "
"autocomplete=\"off\" style=\"width:8em\">"
"</form>\n<p id=\"status\" role=\"status\" aria-live=\"polite\"></p>\n"
"<ul id=\"hits\" aria-label=\"results\"></ul>\n"
"<dialog id=\"big\" aria-label=\"image\"><figure style=\"margin:0\">"
"<img id=\"bigimg\" alt=\"\"><figcaption id=\"bigcap\" class=\"cap\">"
"</figcaption></figure><form method=\"dialog\"><button>Close</button>"
"</form></dialog>\n"
"<script>\n"
"'use strict';\n"
"var $ = function (id) { return document.getElementById(id); };\n"
"var urls = [];\n"
"function headers(json) {\n"
"  var h = {}; if (json) h['Content-Type'] = 'application/json';\n"
"  var key = $('key').value || sessionStorage.getItem('vitkey') || '';\n"
"  if (key) { h['Authorization'] = 'Bearer ' + key;\n"
"    sessionStorage.setItem('vitkey', key); }\n"
"  return h;\n"
"}\n"
"function say(text, err) {\n"
"  $('status').textContent = text;\n"
"  $('status').className = err ? 'err' : '';\n"
"}\n"
"function load(img, path) {\n"
"  fetch('v1/image?id=' + encodeURIComponent(path), {headers: headers()})\n"
"    .then(function (r) { if (!r.ok) throw new Error(r.status);\n"
"      return r.blob(); })\n"
"    .then(function (b) { var u = URL.createObjectURL(b); urls.push(u);\n"
"      img.src = u; })\n"
"    .catch(function () { img.alt = path + ' (no image)'; });\n"
"}\n"
"function show(res, what) {\n"
"  urls.forEach(URL.revokeObjectURL); urls = [];\n"
"  var ul = $('hits'); ul.textContent = '';\n"
"  say(res.length ? res.length + ' hits for ' + what : 'No matches for ' +\n"
"      what);\n"
"  res.forEach(function (h) {\n"
"    var li = document.createElement('li'); li.className = 'hit';\n"
"    li.dataset.score = h.score;\n"
"    var b = document.createElement('button'); b.type = 'button';\n"
"    b.setAttribute('aria-label', 'open ' + h.path);\n"
"    var img = document.createElement('img'); img.alt = h.path;\n"
"    b.appendChild(img); li.appendChild(b);\n"
"    var cap = document.createElement('div'); cap.className = 'cap';\n"
"    var s = document.createElement('span'); s.className = 'score';\n"
"    s.textContent = h.score.toFixed(4);\n"
"    cap.append(h.rank + '. ', s, document.createElement('br'), h.path);\n"
"    li.appendChild(cap); ul.appendChild(li);\n"
"    load(img, h.path);\n"
"    b.addEventListener('click', function () {\n"
"      $('bigimg').src = img.src; $('bigimg').alt = h.path;\n"
"      $('bigcap').textContent = h.rank + '. ' + h.score.toFixed(4) +\n"
"        ' ' + h.path;\n"
"      $('big').showModal();\n"
"    });\n"
"  });\n"
"}\n"
"function search(body, what) {\n"
"  body.k = parseInt($('k').value, 10) || 12;\n"
"  say('Searching for ' + what + '\\u2026');\n"
"  fetch('v1/search', {method: 'POST', headers: headers(true),\n"
"                      body: JSON.stringify(body)})\n"
"    .then(function (r) { return r.json(); })\n"
"    .then(function (o) {\n"
"      if (o.error) say(o.error.code + ': ' + o.error.message, true);\n"
"      else show(o.results, what);\n"
"    })\n"
"    .catch(function (e) { say('The search failed: ' + e, true); });\n"
"}\n"
"function byImage(file) {\n"
"  if (!file) return;\n"
"  var rd = new FileReader();\n"
"  rd.onload = function () { search({image: rd.result}, file.name); };\n"
"  rd.readAsDataURL(file);\n"
"}\n"
"$('f').addEventListener('submit', function (e) {\n"
"  e.preventDefault();\n"
"  var q = $('q').value.trim();\n"
"  if (!q) { say('Type a text, or choose an image.', true); return; }\n"
"  location.hash = 'q=' + encodeURIComponent(q);\n"
"  search({text: q}, '\\u201c' + q + '\\u201d');\n"
"});\n"
"var drop = $('drop');\n"
"drop.addEventListener('click', function () { $('file').click(); });\n"
"drop.addEventListener('keydown', function (e) {\n"
"  if (e.key === 'Enter' || e.key === ' ') { e.preventDefault();\n"
"    $('file').click(); }\n"
"});\n"
"$('file').addEventListener('change', function () {\n"
"  byImage(this.files[0]); });\n"
"drop.addEventListener('dragover', function (e) { e.preventDefault();\n"
"  drop.classList.add('over'); });\n"
"drop.addEventListener('dragleave', function () {\n"
"  drop.classList.remove('over'); });\n"
"drop.addEventListener('drop', function (e) { e.preventDefault();\n"
"  drop.classList.remove('over'); byImage(e.dataTransfer.files[0]); });\n"
"var m = /^#q=(.*)$/.exec(location.hash);\n"
"if (m) { $('q').value = decodeURIComponent(m[1]);\n"
"  search({text: $('q').value}, '\\u201c' + $('q').value + '\\u201d'); }\n"
"</script>\n</body></html>\n";

/* The media type of an image file by its first bytes. */
static const char *image_type(const unsigned char *b, size_t n)
{
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return "image/jpeg";
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "image/png";
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return "image/gif";
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return "image/webp";
    if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        return "image/bmp";
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
        return "image/tiff";
    if (n >= 12 && memcmp(b + 4, "ftyp", 4) == 0)
        return memcmp(b + 8, "avi", 3) == 0 ? "image/avif" : "image/heic";
    return "application/octet-stream";
}

/* GET /v1/image?id=PATH: the bytes of a file that is an item of the
 * worker's index (index_get says so: added by `vit index add` as a file),
 * never of any other path. */
enum MHD_Result svc_do_image(vit_http *h, struct MHD_Connection *con)
{
    const char *id =
        MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "id");
    const char *model =
        MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "model");
    if (!id || !*id)
        return svc_send_error(h, con, "bad_request", -1,
                              "'id', an item's path, is required");
    if (model && strlen(model) > 255)
        return svc_send_error(h, con, "bad_request", -1,
                              "'model' must be a model's name (at most 255 "
                              "bytes)");
    failure f;
    json_t *hdr = json_pack("{s:s, s:[o]}", "op", "index_get", "ids",
                            svc_key_json(id));
    vit_reply rep;
    json_t *b;
    int rc = hdr ? svc_http_call(h, model ? model : "", 0, hdr, NULL, 0, &rep,
                                 &b, &f)
                 : svc_failf(&f, "internal", -1, "out of memory");
    json_decref(hdr);
    if (rc != 0)
        return svc_send_error(h, con, f.code, f.index, "%s", f.msg);
    json_t *it = json_array_get(json_object_get(b, "items"), 0);
    int file = json_is_true(json_object_get(it, "file"));
    json_decref(b);
    vit_reply_free(&rep);
    if (!file)
        return svc_send_error(h, con, "not_found", -1,
                              "%.300s is not a file of the index", id);
    int fd = open(id, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = fd < 0 ? errno : EISDIR;
        if (fd >= 0)
            close(fd);
        return svc_send_error(h, con, "not_found", -1,
                              "%.300s, a file of the index, cannot be read "
                              "here: %s",
                              id, strerror(e));
    }
    unsigned char head[16];
    ssize_t n = pread(fd, head, sizeof head, 0);
    struct MHD_Response *r =
        MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            image_type(head, n > 0 ? (size_t)n : 0));
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
                            "private, max-age=60");
    enum MHD_Result ok = MHD_queue_response(con, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}
