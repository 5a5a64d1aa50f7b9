// Wharf's dashboard: its buttons send JSON to the REST API (the `wharf-json` extension takes
// the body from the button's `data-json`), a refused button shows the API's error at the top of
// the page, and a button whose answer is something new (a retried build, a rollback's release)
// opens that thing's page (`data-follow` is the page's path without the id).
htmx.defineExtension('wharf-json', {
  encodeParameters: function (xhr, parameters, element) {
    xhr.overrideMimeType('text/json');
    xhr.setRequestHeader('Content-Type', 'application/json');
    return element.getAttribute('data-json') || '{}';
  }
});

function wharfFlash(text) {
  var flash = document.getElementById('flash');
  if (flash) {
    flash.textContent = text;
    flash.classList.toggle('shown', text !== '');
  }
}

document.addEventListener('htmx:beforeRequest', function () { wharfFlash(''); });

document.addEventListener('htmx:responseError', function (event) {
  var text = 'The server answered ' + event.detail.xhr.status + '.';
  try {
    text = JSON.parse(event.detail.xhr.responseText).error || text;
  } catch (ignored) { }
  wharfFlash(text);
});

document.addEventListener('htmx:sendError', function () {
  wharfFlash('The server cannot be reached.');
});

document.addEventListener('htmx:afterRequest', function (event) {
  var follow = event.detail.elt.getAttribute('data-follow');
  if (!follow || !event.detail.successful) {
    return;
  }
  try {
    var answer = JSON.parse(event.detail.xhr.responseText);
    if (answer && answer.id) {
      window.location.assign(follow + answer.id);
    }
  } catch (ignored) { }
});

// The App manifest goes to the account's or the organization's page for new Apps on GitHub.
document.addEventListener('submit', function (event) {
  var form = event.target;
  if (!form.matches || !form.matches('form.manifest')) {
    return;
  }
  var organization = (form.elements.organization.value || '').trim();
  var base = form.getAttribute('data-web-url');
  var state = encodeURIComponent(form.getAttribute('data-state'));
  form.action = organization
    ? base + '/organizations/' + encodeURIComponent(organization) + '/settings/apps/new?state=' + state
    : base + '/settings/apps/new?state=' + state;
});
