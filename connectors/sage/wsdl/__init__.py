"""The X3 WSDL and the SOAP-encoding schema, shipped as package data."""
