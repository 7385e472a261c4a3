"""Keyboard, paste and drop anywhere: a small script the app adds once to the page (no request leaves it).

* ``/`` focuses the Search page's upload button (outside a text field);
* an image pasted (Ctrl+V) or dropped anywhere on the Search page becomes the query, through the page's own
  uploader (a paste inside the *Paste* tab's box is left to that box, unless the file is over the cap);
* in the viewer of an original, the left and right arrow keys press its Previous and Next buttons (Esc closes it,
  as every dialog);
* a file over the upload cap, chosen, dropped or pasted into any uploader, is never sent: the uploader gets a short
  note of its name and size instead (``lookalike.ui.safety.TOO_LARGE_MARKER``), so the page says why inline, in the
  cap's own unit, whatever the size (Streamlit's own check would only mark it with a chip).
"""
from __future__ import annotations

import json

import streamlit as st

from .safety import TOO_LARGE_MARKER

__all__ = ["SCRIPT", "install"]

SCRIPT = """<script>
(() => {
  if (window.__lookalikeKeys) return;
  window.__lookalikeKeys = true;
  const typing = t => t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
  const uploader = () => document.querySelector('.st-key-q_upload input[type=file]');
  // a file over the cap becomes a note of its name and size: the page gives the reason, nothing large is sent
  const over = f => window.__lookalikeMaxBytes > 0 && f.size > window.__lookalikeMaxBytes;
  const note = f => new File([window.__lookalikeTooLarge + JSON.stringify({name: f.name, size: f.size})], f.name,
                             {type: 'text/plain'});
  const asSent = files => { const dt = new DataTransfer(); [...files].forEach(f => dt.items.add(over(f) ? note(f) : f));
                            return dt.files; };
  const send = (input, files) => { input.files = asSent(files); input.dispatchEvent(new Event('change', {bubbles: true})); };
  const give = files => {
    const input = uploader();
    const image = [...(files || [])].find(f => f.type.startsWith('image/') || /\\.(heic|heif|avif|tiff?)$/i.test(f.name));
    if (!input || !image) return false;
    send(input, [image]);
    return true;
  };
  // before the uploader's own handlers (capture phase): a chosen file over the cap is swapped for its note, a
  // dropped one is given to the uploader as its note
  document.addEventListener('change', e => {
    const t = e.target;
    if (t && t.type === 'file' && t.files && [...t.files].some(over)) t.files = asSent(t.files);
  }, true);
  document.addEventListener('drop', e => {
    const zone = e.target && e.target.closest && e.target.closest('[data-testid=stFileUploader]');
    const files = e.dataTransfer && e.dataTransfer.files;
    if (!zone || !files || ![...files].some(over)) return;
    const input = zone.querySelector('input[type=file]');
    if (!input) return;
    e.preventDefault(); e.stopPropagation();
    send(input, files);
  }, true);
  document.addEventListener('keydown', e => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (e.key === '/') {
      const b = document.querySelector('.st-key-q_upload [data-testid=stFileUploaderDropzone] button');
      if (b) { e.preventDefault(); b.focus(); }
      return;
    }
    const dialog = document.querySelector('[role=dialog]');
    if (dialog && (e.key === 'ArrowLeft' || e.key === 'ArrowRight')) {
      const want = e.key === 'ArrowLeft' ? 'Previous' : 'Next';
      const b = [...dialog.querySelectorAll('button')].find(x => x.innerText.includes(want));
      if (b && !b.disabled) { e.preventDefault(); b.click(); }
    }
  });
  document.addEventListener('paste', e => {
    const files = e.clipboardData && e.clipboardData.files;
    const inBox = e.target && e.target.closest && e.target.closest('[data-testid=stChatInput]');
    if (inBox && !(files && [...files].some(over))) return;  // the Paste box's own (one over the cap: the uploader's)
    if (give(files)) { e.preventDefault(); e.stopPropagation(); }
  }, true);
  document.addEventListener('dragover', e => {
    if (uploader() && e.dataTransfer && [...e.dataTransfer.types].includes('Files')) e.preventDefault();
  });
  document.addEventListener('drop', e => {
    if (e.target && e.target.closest && e.target.closest('[data-testid=stFileUploaderDropzone]')) return;
    if (give(e.dataTransfer && e.dataTransfer.files)) e.preventDefault();
  });
})();
</script>"""


def install(max_upload_bytes: int = 0) -> None:
    """Add the script to the page (it sets its listeners once per browser tab); files over ``max_upload_bytes``
    (0: no cap) are never sent."""
    marker = json.dumps(TOO_LARGE_MARKER.decode())
    with st.sidebar:
        st.html(f"<script>window.__lookalikeMaxBytes = {int(max_upload_bytes)}; "
                f"window.__lookalikeTooLarge = {marker};</script>" + SCRIPT, unsafe_allow_javascript=True)
