// "Copy for the notes": copies the plain-text note of the result. Kept in a file, not inline (the
// Content-Security-Policy allows scripts from this site only). Without it the note is still on the
// page, selectable, and printed.
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("copy-note");
  var text = document.getElementById("note-text");
  var status = document.getElementById("copy-status");
  if (!button || !text) { return; }
  button.hidden = false;

  function say(message) { if (status) { status.textContent = message; } }

  function copyBySelection() {
    // For pages served over plain http, where navigator.clipboard is not offered.
    var range = document.createRange();
    range.selectNodeContents(text);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    var done = false;
    try { done = document.execCommand("copy"); } catch (e) { done = false; }
    say(done ? button.dataset.copied : button.dataset.failed);
  }

  button.addEventListener("click", function () {
    var note = text.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(note).then(
        function () { say(button.dataset.copied); },
        copyBySelection);
    } else {
      copyBySelection();
    }
  });
});
