// Shows a short message when an htmx request fails, instead of failing silently.
(function () {
  "use strict";
  function toast(text) {
    var box = document.getElementById("toast");
    if (!box) {
      box = document.createElement("div");
      box.id = "toast";
      box.setAttribute("role", "alert");
      document.body.appendChild(box);
    }
    box.textContent = text;
    box.className = "toast show";
    window.clearTimeout(box._timer);
    box._timer = window.setTimeout(function () { box.className = "toast"; }, 6000);
  }
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 403) { toast("You do not have permission to do that."); }
    else if (status === 404) { toast("That no longer exists."); }
    else { toast("The request failed (" + status + "). Try again."); }
  });
  // Copy buttons: <button data-copy="#id"> copies the text of the element it names.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = label; }, 1500);
    }, function () { toast("The browser refused to copy; select the text instead."); });
  });
  document.addEventListener("htmx:sendError", function () {
    toast("mailsec could not be reached. Check your connection.");
  });
})();
