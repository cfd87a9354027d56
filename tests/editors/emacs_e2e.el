;; Emacs 28 + eglot 1.9 (Debian emacs-nox, elpa-eglot) against the real suggest-ls: the completion fallback.
;; Run by tests/editors/emacs_check.py (scripts/editors-e2e.sh). Environment: SUGGEST_PYTHON, SUGGEST_FILE, SUGGEST_OUT.
(dolist (d (directory-files "/usr/share/emacs/site-lisp/elpa" t "^[^.]"))
  (add-to-list 'load-path d))
(require 'eglot)
(require 'json)
(defvar sls-out (getenv "SUGGEST_OUT"))
(defvar sls-result nil)
(defun sls-finish (err)
  (push (cons 'error err) sls-result)
  (with-temp-file sls-out (insert (json-encode sls-result)))
  (kill-emacs 0))
(condition-case err
    (progn
      (add-to-list 'eglot-server-programs
                   `(python-mode . (,(getenv "SUGGEST_PYTHON") "-m" "suggest_ls" "--stdio"
                                    :initializationOptions (:suggestLs (:temperature 0 :debounceMs 0)))))
      (find-file (getenv "SUGGEST_FILE"))
      (setq eglot-sync-connect 120 eglot-connect-timeout 120
            jsonrpc-default-request-timeout 120 eglot-request-timeout 120) ; the coder model on a busy CPU outlasts 10 s
      (apply (function eglot) (eglot--guess-contact))
      (let ((server (eglot-current-server)) (state nil) (tries 0))
        (while (and (not (equal state "ready")) (< tries 600))
          (setq state (plist-get (jsonrpc-request server :suggest/status nil) :state))
          (setq tries (1+ tries))
          (unless (equal state "ready") (sleep-for 0.1)))
        (push (cons 'state state) sls-result)
        (goto-char (point-max))
        (let* ((capf (eglot-completion-at-point))
               (table (nth 2 capf))
               (cands (all-completions "" table)))
          (push (cons 'candidates (vconcat cands)) sls-result)
          (push (cons 'line_before (buffer-substring (line-beginning-position) (line-end-position))) sls-result)
          (completion-at-point)
          (push (cons 'line_after (buffer-substring (line-beginning-position) (line-end-position))) sls-result)))
      (sls-finish nil))
  (error (sls-finish (format "%S" err))))
