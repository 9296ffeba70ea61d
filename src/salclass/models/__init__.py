"""salclass.models"""
