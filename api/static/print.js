// The "Print" button of the result. Kept in a file, not inline: the Content-Security-Policy allows
// scripts from this site only. The form works without it (and prints with the browser's own command).
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("print");
  if (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  }
});
