# policy/ sandbox fragment
