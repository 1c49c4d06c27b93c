//! A console visitor for the HTTP tests: a client that keeps its cookies, does
//! not follow redirects (tests look at each answer) and reads the CSRF token off
//! the pages it fetches.

use std::{collections::HashMap, sync::Mutex};

use reqwest::{header, redirect::Policy, Response};

use super::TestApp;

pub struct Visitor {
    base: String,
    client: reqwest::Client,
    cookies: Mutex<HashMap<String, String>>,
}

/// The value of the hidden CSRF field on a page, if it has one.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

impl Visitor {
    pub fn new(app: &TestApp) -> Self {
        Self {
            base: app.base.clone(),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            cookies: Mutex::new(HashMap::new()),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&self, response: &Response) {
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let mut jar = self.cookies.lock().unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub fn forget_cookies(&self) {
        self.cookies.lock().unwrap().clear();
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.cookies.lock().unwrap().get("keel_session").cloned()
    }

    pub fn set_session_cookie(&self, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .insert("keel_session".into(), value.into());
    }

    pub async fn get(&self, path: &str) -> Response {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(header::ACCEPT, "text/html")
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    /// A page's status and HTML.
    pub async fn page(&self, path: &str) -> (u16, String) {
        let response = self.get(path).await;
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, self.cookie_header())
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    /// A multipart form post: `fields` in order, then a file field named `file`.
    pub async fn post_file(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file_name: &str,
        content: &[u8],
    ) -> Response {
        let boundary = "keel-test-boundary-7d1f";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
                 content-type: application/json\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header(header::COOKIE, self.cookie_header())
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        response
    }

    /// Signs in with `key` as a browser would: the form, then the post.
    pub async fn sign_in(&self, key: &str) -> Response {
        self.sign_in_with(&[("key", key)]).await
    }

    /// Signs in as an account's owner, with email and password.
    pub async fn sign_in_with_password(&self, email: &str, password: &str) -> Response {
        self.sign_in_with(&[("email", email), ("password", password)])
            .await
    }

    async fn sign_in_with(&self, credentials: &[(&str, &str)]) -> Response {
        let (status, html) = self.page("/console/sign-in").await;
        assert_eq!(status, 200);
        let at = html.find("name=\"nonce\" value=\"").unwrap() + 20;
        let nonce = html[at..].split('"').next().unwrap().to_owned();
        let mut fields = vec![("nonce", nonce.as_str()), ("next", "/console")];
        fields.extend_from_slice(credentials);
        self.post("/console/sign-in", &fields).await
    }

    /// The CSRF token of the signed-in session (read off a page).
    pub async fn csrf(&self) -> String {
        let (_, html) = self.page("/console/queues").await;
        csrf_of(&html).expect("a signed-in page carries the CSRF field")
    }
}

pub fn location(response: &Response) -> String {
    response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
