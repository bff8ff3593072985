"""The pool agent: reconciles supervisord with the controller's desired state."""
