// A little plain JavaScript; every page works without it.
(function () {
  "use strict";
  // After the idle time the server has ended the session: show the signed-out page, rather
  // than let the next click fail.
  var body = document.body;
  var idle = parseInt(body.getAttribute("data-idle-seconds") || "0", 10);
  if (idle > 0) {
    var timer;
    var arm = function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        window.location.assign(body.getAttribute("data-signed-out"));
      }, idle * 1000);
    };
    arm();
  }
  // Characters left in a message box.
  Array.prototype.forEach.call(document.querySelectorAll("textarea[data-count]"), function (box) {
    var max = parseInt(box.getAttribute("maxlength"), 10);
    var note = document.createElement("p");
    note.className = "count";
    note.setAttribute("aria-live", "polite");
    box.parentNode.appendChild(note);
    var update = function () { note.textContent = (max - box.value.length) + " characters left"; };
    box.addEventListener("input", update);
    update();
  });
  // Move focus to an error summary so screen reader and keyboard users hear it first.
  var summary = document.querySelector(".error-summary");
  if (summary) { summary.focus(); }
})();
