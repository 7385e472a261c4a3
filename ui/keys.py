"""Keyboard, paste and drop anywhere: a small script the app adds once to the page (no request leaves it).

* ``/`` focuses the Search page's upload button (outside a text field);
* an image pasted (Ctrl+V) or dropped anywhere on the Search page becomes the query, through the page's own
  uploader (a paste inside the *Paste* tab's box is left to that box);
* in the viewer of an original, the left and right arrow keys press its Previous and Next buttons (Esc closes it,
  as every dialog).
"""
from __future__ import annotations

import streamlit as st

__all__ = ["SCRIPT", "install"]

SCRIPT = """<script>
(() => {
  if (window.__lookalikeKeys) return;
  window.__lookalikeKeys = true;
  const typing = t => t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
  const uploader = () => document.querySelector('.st-key-q_upload input[type=file]');
  const give = files => {
    const input = uploader();
    const image = [...(files || [])].find(f => f.type.startsWith('image/') || /\\.(heic|heif|avif|tiff?)$/i.test(f.name));
    if (!input || !image) return false;
    const dt = new DataTransfer();
    dt.items.add(image);
    input.files = dt.files;
    input.dispatchEvent(new Event('change', {bubbles: true}));
    return true;
  };
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
    if (e.target && e.target.closest && e.target.closest('[data-testid=stChatInput]')) return;
    if (give(e.clipboardData && e.clipboardData.files)) e.preventDefault();
  });
  document.addEventListener('dragover', e => {
    if (uploader() && e.dataTransfer && [...e.dataTransfer.types].includes('Files')) e.preventDefault();
  });
  document.addEventListener('drop', e => {
    if (e.target && e.target.closest && e.target.closest('[data-testid=stFileUploaderDropzone]')) return;
    if (give(e.dataTransfer && e.dataTransfer.files)) e.preventDefault();
  });
})();
</script>"""


def install() -> None:
    """Add the script to the page (it sets its listeners once per browser tab)."""
    with st.sidebar:
        st.html(SCRIPT, unsafe_allow_javascript=True)
