// Small conveniences; every page works without them.
(function () {
  // A search form leaves empty fields out of the address, so a bookmarked search stays short.
  var form = document.querySelector("form.search");
  if (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("input, select").forEach(function (field) {
        if (field.name && field.value === "" ) field.disabled = true;
      });
    });
  }
  // A chart's "lines by" choice redraws it at once (without script, the search's button sends it).
  document.querySelectorAll("select[data-submit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (form) form.requestSubmit();
    });
  });
  // "← search" returns to the results it came from, not to an empty search.
  var back = document.querySelector("a.back");
  if (back && document.referrer.indexOf(location.origin + "/?") === 0) back.href = document.referrer;
})();
