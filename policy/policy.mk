# policy/ fragment
