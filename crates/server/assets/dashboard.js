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

// What a button's request answers is read from the request itself, not from events on the
// button: a live part may have replaced the button (a fresh copy of the same page) meanwhile.
document.addEventListener('htmx:beforeSend', function (event) {
  var follow = event.detail.elt.getAttribute('data-follow');
  var xhr = event.detail.xhr;
  xhr.addEventListener('load', function () {
    var answer = null;
    try {
      answer = JSON.parse(xhr.responseText);
    } catch (ignored) { }
    if (xhr.status < 200 || xhr.status >= 300) {
      wharfFlash((answer && answer.error) || 'The server answered ' + xhr.status + '.');
    } else if (follow && answer && answer.id) {
      window.location.assign(follow + answer.id);
    }
  });
  xhr.addEventListener('error', function () {
    wharfFlash('The server cannot be reached.');
  });
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

// A log line already on the page is not added again: a stream opened anew after an error
// starts from where the page began, not from the last line it showed.
document.addEventListener('htmx:sseBeforeMessage', function (event) {
  var message = event.detail;
  if (message && message.type === 'line' && message.lastEventId
      && document.getElementById('l' + message.lastEventId)) {
    event.preventDefault();
  }
});
