// The report's only script: it holds no run data. It adds "Expand all" and
// "Collapse all" buttons, and opens every section before printing.
(function () {
  "use strict";
  var controls = document.getElementById("controls");
  function setAll(open) {
    var all = document.querySelectorAll("details");
    for (var i = 0; i < all.length; i++) {
      all[i].open = open;
    }
  }
  function button(label, open) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", function () { setAll(open); });
    controls.appendChild(b);
  }
  if (controls) {
    button("Expand all", true);
    button("Collapse all", false);
    controls.hidden = false;
  }
  window.addEventListener("beforeprint", function () { setAll(true); });
})();
