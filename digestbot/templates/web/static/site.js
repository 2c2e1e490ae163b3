// Progressive enhancement only: every form works without this file.
(function () {
  "use strict";
  // Pre-select the browser's time zone on the subscribe form.
  var zone = document.querySelector("select[data-prefill]");
  if (zone) {
    try {
      var here = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (here && zone.querySelector('option[value="' + here.replace(/"/g, "") + '"]')) {
        zone.value = here;
      }
    } catch (e) { /* old browser: UTC stays selected */ }
  }
  // The weekday matters only for weekly digests.
  var frequency = document.getElementById("frequency");
  var weekly = document.querySelector("[data-weekly]");
  if (frequency && weekly) {
    var sync = function () { weekly.hidden = frequency.value !== "weekly"; };
    frequency.addEventListener("change", sync);
    sync();
  }
})();
